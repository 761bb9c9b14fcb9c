"""Ray's tests (tests/ray_cases.py) in a pytest process of their own.

Ray starts its native core worker inside the process that calls ``ray.init``, and
``ray.shutdown`` does not unload it: its threads outlive the instance.  Run in the suite's
process, they shared it with a hundred later tests (and once, late in a CI run, the process
died of a segmentation fault that no test of its own explains).  So the cases run in a child
pytest; the suite's fixtures (tests/conftest.py) apply there as here.  Without Ray installed
the Ray cases skip and the rest pass.
"""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_ray_cases_in_their_own_process():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ray_cases.py"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert " passed" in r.stdout, r.stdout[-2000:]
