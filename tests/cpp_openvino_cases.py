"""The C++ library's OpenVINO backends and its ``auto`` choice against the Python runtime's
(issue 24, item 5): ``openvino`` and ``openvino-bf16`` give the same uint8 image as Python's
same backend (bit for bit: the same OpenVINO library, the same compile settings, the same
inputs), and ``auto`` picks the same backend for every graph, for the same reason, from the
same record, quality gate, CPU flags and precision option (runtime/cpp/src/choice.cpp against
runtime/backends/choice.py).  The engine's fixed-shape copies (one per call's input shapes, least
recently used dropped past ``static_limit``) are compared with the Python engine's call by call
through ``ldmind_internals`` (runtime/cpp/tests/internals.cpp).  The CPU is simulated with ``LDMIND_CPUINFO`` (both runtimes read
it), so the cases do not depend on this machine's flags.  A build without OpenVINO refuses
``--backend openvino`` in one line and runs ``auto`` on ONNX Runtime."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import FIXED_MEMORY as MEMORY, cpp_build_dir, reseal
from test_cpp import cpp_upscale, lr_crop, probe
from test_runtime_choice import GRAPHS, _gate

pytestmark = pytest.mark.usefixtures("fixed_memory")
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (pip install 'ldmind[openvino]')")

CPUINFO = "processor\t: 0\nmodel name\t: Simulated CPU 9000\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\n"
# {backend: {graph: seconds}}: encoder fastest on openvino fp32, the U-Net and LIIF on bf16, the
# decoder tied (cpu wins ties): a mixed plan wherever bf16 is allowed
SECONDS = {"cpu": {g: 1.0 for g in GRAPHS},
           "openvino": {"encoder": 0.5, "unet_step": 2.0, "decoder": 1.0, "liif": 0.9},
           "openvino-bf16": {"encoder": 0.6, "unet_step": 0.4, "decoder": 1.0, "liif": 0.8}}


def plan(build, tmp_path, engines, backend="auto", precision="auto") -> tuple[int, dict, str, str]:
    """(status, {graph: backend}, reason, stderr) of the C++ library opening ``engines``."""
    r = probe(build, "plan", tmp_path, dir=engines, backend=backend, precision=precision)
    graphs = dict(ln.split()[1:] for ln in r.stdout.splitlines() if ln.startswith("graph "))
    reason = next((ln[len("reason "):] for ln in r.stdout.splitlines() if ln.startswith("reason ")), "")
    return r.returncode, graphs, reason, r.stderr


@pytest.fixture()
def machine(sr_engines, tmp_path, monkeypatch):
    """A copy of the tiny export, an empty record and a simulated CPU: ``machine(bf16=True)``."""
    d = tmp_path / "tiny"
    shutil.copytree(sr_engines, d)
    monkeypatch.setenv("LDMIND_BACKEND_RECORD", str(tmp_path / "cache" / "backends.json"))

    def simulate(bf16: bool):
        (tmp_path / "cpuinfo").write_text(CPUINFO.format(extra="avx512_bf16" if bf16 else "avx512_vnni"))
        monkeypatch.setenv("LDMIND_CPUINFO", str(tmp_path / "cpuinfo"))
        return d
    return simulate


@needs_openvino
@pytest.mark.parametrize("backend", ["openvino", "openvino-bf16"])
def test_openvino_equals_python(cpp_build, tmp_path, sr_engines, backend):
    from runtime import Pipeline

    pipe = Pipeline.load(sr_engines, backend=backend)
    lr = lr_crop(20, 28)
    kw = dict(steps=2, seed=7)
    py = np.stack(pipe.upscale(lr, scale=3.0, num_samples=2, output="array", **kw))
    pipe.close()
    cpp = cpp_upscale(cpp_build, tmp_path, lr, 2, *py.shape[1:3], dir=sr_engines, backend=backend, scale=3.0, **kw)
    assert np.array_equal(cpp, py), f"{int((cpp != py).sum())} of {py.size} values differ"


@needs_openvino
def test_openvino_eight_threads_equal_serial(cpp_build, tmp_path, sr_engines):
    """Concurrent calls on one pipeline each take an infer request of their own from the pool."""
    r = probe(cpp_build, "threads", tmp_path, lr_crop(20, 28), dir=sr_engines, backend="openvino-bf16", scale=3,
              steps=2, threads=8)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "8 threads: 0 differ" in r.stdout


def internals(build, *args) -> list[str]:
    """The lines ``ldmind_internals`` (runtime/cpp/tests/internals.cpp) prints."""
    r = subprocess.run([str(build / "ldmind_internals"), *map(str, args)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def test_static_limit_equals_python(cpp_build):
    """The C++ engine keeps as many fixed-shape copies of a graph as the Python engine: the same
    weight budget, maximum and rule (runtime/backends/openvino.py imports no openvino)."""
    from runtime.backends.openvino import STATIC_MAX, STATIC_WEIGHT_BUDGET, static_limit

    sizes = [0, 1, 20 << 20, 64 << 20, 100 << 20, 103 << 20, 170 << 20, 171 << 20, 256 << 20, 456 << 20, 1 << 40]
    lines = internals(cpp_build, "static_limit", *sizes)
    assert lines == [f"budget {STATIC_WEIGHT_BUDGET}", f"max {STATIC_MAX}",
                     *(f"limit {n} {static_limit(n)}" for n in sizes)]


def _step_feed(bundle, n: int, h: int, w: int) -> dict:
    """internals.cpp's unet_step feed for a latent of n x h x w."""
    from ldmind_ref.core.noise import gaussian

    shape = (n, bundle.z_channels, h, w)
    feed = {"z_t": gaussian(1, 0, shape)}
    if bundle.conditional:
        feed["cond"] = gaussian(1, 1, shape)
    feed.update(timestep=np.full(n, 500, np.int64), alpha_bar_t=np.array([0.5], np.float32),
                alpha_bar_prev=np.array([0.625], np.float32), sigma_t=np.array([0.125], np.float32),
                noise=gaussian(1, 2, shape))
    return feed


@needs_openvino
@pytest.mark.parametrize("backend", ["openvino", "openvino-bf16"])
def test_each_shape_runs_on_its_own_fixed_shape_copy_as_in_python(cpp_build, sr_engines, backend):
    """tests/openvino_cases.py's test of the fixed-shape copies, on the C++ engine and
    against the Python engine: the same copies held after every call (least recently used
    first, at most 2), and the same bits from every call -- the same bits for a shape whose copy
    was dropped and compiled again, and on a fresh engine."""
    import hashlib

    from runtime.backends.openvino import create_engines
    from runtime.bundle import load_bundle

    bundle = load_bundle(sr_engines)
    small, wide, one = "2x6x10", "2x6x20", "1x6x10"
    calls = [small, wide, one, small, one]
    py = create_engines(backend, bundle, graphs=["unet_step"])["unet_step"]
    py.max_static = 2
    want = []
    for call in calls:
        out = py(_step_feed(bundle, *map(int, call.split("x"))))
        digest = hashlib.sha256(out["z_prev"].tobytes() + out["pred_z0"].tobytes()).hexdigest()
        held = " | ".join(" ".join(f"{k}={'x'.join(map(str, s))}" for k, s in sorted(d.items()))
                          for d in py.static_shapes)
        want += [f"call {call} {digest}", f"held {held}"]
    py.close()
    got = internals(cpp_build, "calls", sr_engines, backend, 2, *calls)
    assert got == want
    z = [ln.split()[-1] for ln in got[0::2]]
    assert z[0] == z[3] and z[2] == z[4]                     # compiled again: the same bits
    held = [[k.split()[-1] for k in ln[len("held "):].split(" | ")] for ln in got[1::2]]   # z_t's shape
    s, w, o = (f"z_t={b[0]}x{bundle.z_channels}x{b[2:]}" for b in (small, wide, one))
    assert held == [[s], [s, w], [w, o], [o, s], [s, o]]
    fresh = internals(cpp_build, "calls", sr_engines, backend, 0, small)   # the graph's own limit, nothing before
    assert fresh == got[:2]


CASES = {  # name: (native bf16, gate {graph: pass} or None, gate together, record, precision)
    "bf16 allowed": (True, {g: True for g in GRAPHS}, True, True, "auto"),
    "gate refuses liif": (True, {"encoder": True, "unet_step": True, "decoder": True, "liif": False}, True, True, "auto"),
    "gate refuses together": (True, {g: True for g in GRAPHS}, False, True, "auto"),
    "no gate file": (True, None, True, True, "auto"),
    "CPU without bf16": (False, {g: True for g in GRAPHS}, True, True, "auto"),
    "fp32 forced": (True, {g: True for g in GRAPHS}, True, True, "fp32"),
    "bf16 forced": (False, None, True, True, "bf16"),
    "no record": (True, {g: True for g in GRAPHS}, True, False, "auto"),
}


@needs_openvino
@pytest.mark.parametrize("case", list(CASES))
def test_auto_plan_equals_python(cpp_build, tmp_path, machine, case):
    from runtime import Pipeline
    from runtime.backends import choice, record
    from runtime.bundle import load_bundle

    native, gate, together, recorded, precision = CASES[case]
    d = machine(native)
    if gate is not None:
        _gate(d, gate, together)
    if recorded:
        assert record.save(load_bundle(d), SECONDS) is not None
    pipe = Pipeline.load(d, backend="auto", precision=precision)      # LDMIND_AUTO_MEASURE=0 (conftest)
    code, graphs, reason, err = plan(cpp_build, tmp_path, d, precision=precision)
    assert code == 0, err
    assert graphs == pipe.graph_backends
    if pipe.auto is None:                                                 # bf16 forced
        assert reason == pipe.backend_reason == "auto"
    else:   # the same plan and reasons; the GPU backends' reasons are each runtime's own
        assert reason.startswith(f"auto: {pipe.auto}; skipped ")
        cpu_over = "; ".join(f"{k}: {v}" for k, v in pipe.skipped.items() if k in choice.CPU_BACKENDS)
        assert reason.endswith(cpu_over)
    if case == "bf16 allowed":     # a mixed plan (three backends, two LIIF query tiles): the same image
        assert set(graphs.values()) == {"cpu", "openvino", "openvino-bf16"}
        lr = lr_crop(20, 28)
        py = pipe.upscale(lr, scale=2.5, steps=2, seed=3, output="array")[0]
        cpp = cpp_upscale(cpp_build, tmp_path, lr, 1, *py.shape[:2], dir=d, backend="auto", scale=2.5, steps=2,
                          seed=3)[0]
        assert np.array_equal(cpp, py)
    pipe.close()


CPU_PLUGIN = "libopenvino_intel_cpu_plugin.so"   # loaded by OpenVINO on its first compilation


@needs_openvino
def test_info_describes_auto_without_compiling(cpp_build, tmp_path, machine):
    """``ldmind info`` says what ``auto`` runs (Python's ``info``: the recorded plan) without
    compiling a graph, as Python's: OpenVINO's CPU plugin is never loaded (LD_DEBUG=files lists
    every library the process loads; opening the same plan does load it).  The inspection
    handle (``ldmind_inspect``) gives the plan of ``ldmind_open_ex`` and runs nothing."""
    from runtime import info
    from runtime.backends import record
    from runtime.bundle import load_bundle

    d = machine(True)
    _gate(d, {g: True for g in GRAPHS})
    assert record.save(load_bundle(d), SECONDS) is not None
    env = {**os.environ, "LDMIND_MEMORY_LIMIT": MEMORY, "LD_DEBUG": "files"}
    r = subprocess.run([str(cpp_build / "ldmind"), "info", str(d)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert CPU_PLUGIN not in r.stderr
    picks = next(ln for ln in r.stdout.splitlines() if ln.startswith("  auto picks: "))[len("  auto picks: "):]
    py = info.summary(load_bundle(d), verified=True)["auto"]       # nothing opened on Python's side either
    assert "openvino-bf16" in py and picks.startswith(py + "; skipped ")
    opened = subprocess.run([str(cpp_build / "ldmind_probe"), "plan", f"dir={d}", "backend=auto"], capture_output=True,
                            text=True, env=env, timeout=300)
    assert opened.returncode == 0 and CPU_PLUGIN in opened.stderr    # the check above can see a compilation
    inspected = subprocess.run([str(cpp_build / "ldmind_probe"), "inspect", f"dir={d}"], capture_output=True,
                               text=True, env=env, timeout=300)
    assert inspected.returncode == 0 and CPU_PLUGIN not in inspected.stderr
    lines = inspected.stdout.splitlines()
    assert lines[:-1] == opened.stdout.splitlines() and lines[-2] == f"reason auto: {picks}"
    assert lines[-1].startswith(f"run 2 {d}: opened without its graphs (ldmind_inspect)")


@needs_openvino
def test_without_a_record_cpp_says_what_python_would_measure(cpp_build, tmp_path, machine, monkeypatch):
    """Python measures on first use (and writes the record); C++ only reads it: every graph on
    cpu, and the reason names the record file and the keys it looked for -- Python's keys."""
    from runtime.backends import record
    from runtime.bundle import load_bundle

    monkeypatch.delenv("LDMIND_AUTO_MEASURE", raising=False)
    d = machine(True)
    _gate(d, {g: True for g in GRAPHS})
    code, graphs, reason, err = plan(cpp_build, tmp_path, d)
    assert code == 0, err
    assert graphs == {g: "cpu" for g in GRAPHS}
    assert (f"not measured: {record.record_path()} has no times for this machine ({record.machine_key()}) "
            f"and export ({record.export_key(load_bundle(d))})") in reason


@needs_openvino
def test_precision_refusals_equal_python(cpp_build, tmp_path, sr_engines):
    from runtime import Pipeline
    from runtime.errors import EngineError

    for backend, precision in (("cpu", "bf16"), ("openvino-bf16", "fp32"), ("auto", "fp16")):
        with pytest.raises(EngineError) as e:
            Pipeline.load(sr_engines, backend=backend, precision=precision)
        code, _, _, err = plan(cpp_build, tmp_path, sr_engines, backend, precision)
        assert code == 12 and err.strip() == f"status 2: {e.value}"


@pytest.fixture(scope="module")
def no_openvino_build():
    """The library built without OpenVINO (LDMIND_OPENVINO=0), as where it is not installed."""
    return cpp_build_dir("noov", env={"LDMIND_OPENVINO": "0"})


def test_build_without_openvino_refuses_it_in_one_line(no_openvino_build, tmp_path, machine, capsys):
    d = machine(True)
    _gate(d, {g: True for g in GRAPHS})
    code, _, _, err = plan(no_openvino_build, tmp_path, d, backend="openvino")
    assert code == 12 and err.strip().startswith(
        "status 2: backend 'openvino' is not available: this build of the library has no OpenVINO")
    code, graphs, reason, err = plan(no_openvino_build, tmp_path, d)          # auto: ONNX Runtime only
    assert code == 0, err
    assert graphs == {g: "cpu" for g in GRAPHS} and "the only CPU backend allowed here" in reason
    assert "openvino: this build of the library has no OpenVINO" in reason
    lr = tmp_path / "lr.png"
    from PIL import Image
    Image.fromarray(lr_crop(12, 12)).save(lr)
    r = subprocess.run([str(no_openvino_build / "ldmind"), "upscale", str(lr), "--scale", "2", "-o",
                        str(tmp_path / "o.png"), "--engines", str(d), "--backend", "openvino-bf16"],
                       capture_output=True, text=True, env={**os.environ, "LDMIND_MEMORY_LIMIT": MEMORY}, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("ldmind: error: backend 'openvino-bf16' is not available: this build of the library "
                               "has no OpenVINO")
    assert not (tmp_path / "o.png").exists()


@needs_openvino
@pytest.mark.parametrize("backend", ["openvino", "openvino-bf16"])
def test_swapped_graph_refused_as_python_refuses_it(cpp_build, tmp_path, sr_engines, backend):
    """The decoder's file as the encoder, its checksum fixed up: the OpenVINO engines of both
    runtimes compare the graph's input and output names with the manifest's (base.names_mismatch,
    core io_mismatch) and say the same line."""
    from runtime import Pipeline
    from runtime.errors import EngineError

    d = tmp_path / "swapped"
    shutil.copytree(sr_engines, d)
    shutil.copy(d / "decoder.onnx", d / "encoder.onnx")
    reseal(d, "encoder")
    with pytest.raises(EngineError) as e:
        Pipeline.load(d, backend=backend)
    assert "graph 'encoder' does not match the manifest (inputs ['z'], the manifest declares ['lr'])" in str(e.value)
    code, _, _, err = plan(cpp_build, tmp_path, d, backend)
    assert code == 12 and err.strip() == f"status 2: {e.value}"
