"""Shared fixtures. Engineers append their own fixtures below; keep sections labelled."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Real photos shipped with the repository (downscaled, licences in tests/data/README.md):
# the suite never reaches outside the checkout.  ../shared/data (LDMIND_DATA) is only for
# training and evaluation runs.
TEST_DATA = ROOT / "tests" / "data"
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")


def shipped_photos() -> list[Path]:
    return sorted(p for p in TEST_DATA.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS)


@pytest.fixture(scope="session")
def train_dir() -> Path:
    """The shipped test photos (a training-data folder for the tiny presets' 32 px crops)."""
    if len(shipped_photos()) < 4:
        pytest.fail(f"the shipped test photos are missing from {TEST_DATA}")
    return TEST_DATA


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


@pytest.fixture(scope="module")
def sr(runtime_exports):
    """The tiny SR export as (reference model from its checkpoint, CPU pipeline on its graphs)."""
    from ldmind_ref.checkpoint import load_model
    from runtime import Pipeline

    e = runtime_exports["sr"]
    return load_model(e["ckpt"]), Pipeline.load(e["engines"], backend="cpu")


@pytest.fixture(scope="module")
def sr_engines(runtime_exports) -> Path:
    """The tiny SR export's engine directory."""
    return runtime_exports["sr"]["engines"]


@pytest.fixture(scope="module")
def gen_engines(runtime_exports) -> Path:
    """The tiny-gen (generation) export's engine directory."""
    return runtime_exports["gen"]["engines"]


@pytest.fixture(scope="module")
def sr_pipe(sr_engines):
    """A CPU pipeline on the tiny SR export."""
    from runtime import Pipeline
    return Pipeline.load(sr_engines, backend="cpu")


# -- C++ runtime (issue 12): one build of runtime/cpp per session ------------------------------
def reseal(engines: Path, graph: str) -> None:
    """Record ``graph``'s current file checksum in the manifest (after a test altered the file on
    purpose), so that only the graph's own contents can tell what changed."""
    import json

    from export.manifest import sha256_file

    path = engines / "manifest.json"
    m = json.loads(path.read_text())
    m["graphs"][graph]["sha256"] = sha256_file(engines / f"{graph}.onnx")
    path.write_text(json.dumps(m))


def cpp_build_dir(variant: str = "rel", flags: str = "", env: dict | None = None) -> Path:
    """Build runtime/cpp (library, CLI, C test driver) into runtime/cpp/build/VARIANT with
    ``flags`` added to the compile and link flags, by ``runtime/cpp/build.sh`` (what ``make
    cpp`` runs; incremental: a second call only relinks what changed); ``env``: more variables
    for build.sh (``LDMIND_OPENVINO=0``: without OpenVINO)."""
    import os
    import subprocess
    import sys

    r = subprocess.run(["bash", str(ROOT / "runtime" / "cpp" / "build.sh"), variant, flags], cwd=ROOT,
                       env={**os.environ, "PYTHON": sys.executable, **(env or {})}, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"runtime/cpp/build.sh {variant} failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return Path(r.stdout.strip().splitlines()[-1])


# The latent tile choices read the memory available: C++/Python comparisons give both sides
# this fixed amount (LDMIND_MEMORY_LIMIT).
def default_sigint() -> None:
    """``preexec_fn`` for a child a test interrupts with SIGINT: the default disposition.  A
    shell without job control starts background jobs with SIGINT ignored (``bash .ci/run &`` in
    a script), children inherit that, and Python keeps an inherited SIG_IGN: the signal the test
    sends would never arrive."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


FIXED_MEMORY = "16e9"


@pytest.fixture
def fixed_memory(monkeypatch):
    monkeypatch.setenv("LDMIND_MEMORY_LIMIT", FIXED_MEMORY)


@pytest.fixture(scope="session")
def cpp_build() -> Path:
    """The C++ build directory (``ldmind``, ``ldmind_probe``, ``libldmind.so``)."""
    return cpp_build_dir()


# -- backend selection (issue 11): no recorded measurement from the developer's cache ----------
@pytest.fixture(scope="session", autouse=True)
def _no_backend_record(tmp_path_factory):
    """``backend="auto"`` reads a per-machine record of per-graph CPU backend timings
    (runtime/backends/record.py) and measures one on first use; the suite starts with none and
    measures nothing unless a test asks (every graph on ``cpu``: the outputs the parity tests
    pin), here and in subprocesses."""
    import os

    from runtime.backends.choice import MEASURE_ENV
    from runtime.backends.record import RECORD_ENV

    old = {k: os.environ.get(k) for k in (RECORD_ENV, MEASURE_ENV)}
    os.environ[RECORD_ENV] = str(tmp_path_factory.mktemp("backend_record") / "backends.json")
    os.environ[MEASURE_ENV] = "0"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
