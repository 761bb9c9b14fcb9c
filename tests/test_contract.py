"""The request contract (``ldmind_ref/core/contract.py``) and the C++ header written from it.

The C++ library and CLI read their defaults, limits and messages from
``runtime/cpp/src/contract.hpp``; it is generated, so the two sides agree only if the committed
header is what the generator writes now.
"""
from __future__ import annotations

import string

from conftest import ROOT

from ldmind_ref.core import contract

HEADER = ROOT / "runtime" / "cpp" / "src" / "contract.hpp"


def test_committed_header_is_generated():
    assert HEADER.read_text() == contract.cpp_header(), (
        "runtime/cpp/src/contract.hpp differs from ldmind_ref/core/contract.py: regenerate it with "
        "`python -m ldmind_ref.core.contract --cpp runtime/cpp/src/contract.hpp`")


def test_every_constant_reaches_cpp():
    header = contract.cpp_header()
    names = [k for k in vars(contract) if k.isupper() and not k.startswith("_")]
    assert len(names) > 40
    for name in names:
        assert f" {name} = " in header or f" {name}{{" in header, name


def test_messages_are_positional_templates():
    """Only bare ``{}`` fields: C++ ``contract::fill`` fills them in order, as ``str.format``."""
    for name, value in vars(contract).items():
        if name.isupper() and not name.startswith("_") and isinstance(value, str):
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(value) if f is not None]
            assert all(f == "" and not spec and not conv for f, spec, conv in fields), name
    assert contract.ETA.format(-1.0) == "eta must be a finite number >= 0, got -1.0"
    assert contract.IN_RANGE.format("--backproject", 0, contract.MAX_BACKPROJECT, 101) == \
        "--backproject must be in 0..100, got 101"
    assert contract.FIDELITY.format(1.5) == "fidelity must be a number in 0..1, got 1.5"
    assert contract.MIN_FIDELITY <= contract.DEFAULT_FIDELITY <= contract.MAX_FIDELITY


def test_profile_stages():
    assert contract.profile_stage(contract.render_stage(64, 48)) == "LIIF queries"
    assert contract.profile_stage(contract.STAGE_DENOISE) == "U-Net steps"
    assert contract.profile_stage("image decode") == "image decode"
    assert set(contract.PROFILE_STAGE_OF.values()) <= set(contract.PROFILE_STAGES)
