"""One build of the C++ runtime (runtime/cpp) for the tests that need it (issue 12).

    from tests.cpp_build import cpp_build_dir      # or: sys.path has tests/ under pytest
    build = cpp_build_dir()                         # runtime/cpp/build/test: ldmind, libldmind.so, ldmind_probe

ONNX Runtime comes from ``runtime/cpp/fetch_ort.sh`` (the system's headers and library on
Debian 13; else Debian 13's headers downloaded and the library of this Python's onnxruntime
wheel).  Incremental: a second call only rebuilds what changed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "runtime" / "cpp"


class BuildError(RuntimeError):
    """A step of the build failed; the message ends with its output."""


def cpp_build_dir(variant: str = "test", flags: str = "", jobs: int = 2) -> Path:
    """Configure and build runtime/cpp into runtime/cpp/build/VARIANT with ``flags`` added to
    the C/C++ compile and link flags (e.g. "-fsanitize=address"); returns the build folder."""
    build = CPP / "build" / variant
    env = {**os.environ, "PYTHON": sys.executable}

    def run(cmd: list) -> str:
        r = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"{' '.join(map(str, cmd))} failed:\n{(r.stdout + r.stderr)[-3000:]}")
        return r.stdout.strip()

    ort = run(["bash", CPP / "fetch_ort.sh", CPP / "build" / "ort"]).splitlines()[-1]
    run(["cmake", "-S", CPP, "-B", build, f"-DORT_ROOT={ort}", "-DCMAKE_BUILD_TYPE=Release",
         f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}", f"-DCMAKE_EXE_LINKER_FLAGS={flags}",
         f"-DCMAKE_SHARED_LINKER_FLAGS={flags}"])
    run(["cmake", "--build", build, "-j", str(jobs)])
    return build


if __name__ == "__main__":
    print(cpp_build_dir(*sys.argv[1:2]))
