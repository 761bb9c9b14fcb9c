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
