"""The OpenVINO backend's cases (tests/openvino_cases.py) in a pytest process of their own.

They compile OpenVINO graphs, in bf16 too, in fixed-shape copies, in the process that runs
them.  After OpenVINO's bf16 compilation a later fork in the same process can die of SIGSEGV
(docs/RUNTIME.md, "fork after OpenVINO's bf16 compilation"): in the suite's process the
victim was test_train_all's loading processes, and the whole CI run died with it.  So the
cases run in a child pytest, as tests/test_cpp_openvino.py runs the C++ ones; tests/conftest.py's
fixtures apply there too.
"""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_openvino_cases_in_their_own_process():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/openvino_cases.py"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert " passed" in r.stdout, r.stdout[-2000:]
