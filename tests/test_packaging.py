"""The wheel holds every package of the library and leaves out the programs (pyproject.toml
lists its packages one by one: a new subpackage missing there would be missing from an install)."""
from __future__ import annotations

import tomllib

from conftest import ROOT

# run from a checkout, never installed (runtime/programs/__init__.py)
PROGRAMS = "runtime.programs"


def test_the_wheel_lists_every_library_package_and_no_program():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ("ldmind_ref", "export", "runtime") for init in (ROOT / top).rglob("__init__.py")}
    assert PROGRAMS in found and PROGRAMS not in listed
    assert listed == {p for p in found if p != PROGRAMS and not p.startswith(PROGRAMS + ".")}
