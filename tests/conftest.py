"""Shared fixtures. Engineers append their own fixtures below; keep sections labelled."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Real photos live beside the checkout (../shared/data), also in CI.
DATA = Path(os.environ.get("LDMIND_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def train_dir() -> Path:
    d = DATA / "train"
    if not d.is_dir():
        pytest.fail(f"training photos not found at {d} (set LDMIND_DATA)")
    return d


# -- runtime (issue 4): tiny exports shared by tests/test_runtime*.py --------------------------
@pytest.fixture(scope="session")
def runtime_exports(tmp_path_factory) -> dict:
    """Random tiny (SR) and tiny-gen (generation) models saved as checkpoints and exported
    once per session with ``python -m export --checkpoint``: {"sr"|"gen": {"ckpt", "engines"}}."""
    import subprocess
    import sys

    from ldmind_ref.checkpoint import save_model
    from ldmind_ref.config import preset
    from ldmind_ref.model import random_model

    root = tmp_path_factory.mktemp("runtime_exports")
    out = {}
    procs = []
    for key, name, seed in (("sr", "tiny", 1), ("gen", "tiny-gen", 2)):
        ckpt = root / f"{name}.safetensors"
        save_model(ckpt, random_model(preset(name), seed))
        engines = root / name
        procs.append(subprocess.Popen([sys.executable, "-m", "export", "--checkpoint", str(ckpt), "--out",
                                       str(engines)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
        out[key] = {"ckpt": ckpt, "engines": engines}
    for p in procs:
        log = p.communicate()[0]
        if p.returncode != 0:
            pytest.fail(f"python -m export failed:\n{log}")
    return out
