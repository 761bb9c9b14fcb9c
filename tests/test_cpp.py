"""The C++ library (runtime/cpp) against the Python runtime: the same seed gives the same
uint8 image and latents within 1e-5, through the C API (``ldmind_probe``, a C program).

Layers: the tiny test models (untiled and forced latent tiles, both samplers, with and
without back-projection, three scales), generation, the shipped model, 8 threads on one
pipeline, the engine-directory refusals, and LeakSanitizer over 20 upscales."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import FIXED_MEMORY as MEMORY, ROOT, TEST_DATA, cpp_build_dir

pytestmark = pytest.mark.usefixtures("fixed_memory")


def lr_crop(h: int, w: int, name: str = "skimage-coffee.jpg") -> np.ndarray:
    return np.ascontiguousarray(np.asarray(Image.open(TEST_DATA / name).convert("RGB"))[40:40 + h, 60:60 + w])


def probe(build, mode: str, tmp_path, lr: np.ndarray | None = None, **kw) -> subprocess.CompletedProcess:
    args = [str(build / "ldmind_probe"), mode]
    if lr is not None:
        path = tmp_path / "lr.raw"
        lr.tofile(path)
        args += [f"in={path}", f"w={lr.shape[1]}", f"h={lr.shape[0]}"]
    args += [f"{k}={v}" for k, v in kw.items()]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, "LDMIND_MEMORY_LIMIT": MEMORY},
                          timeout=600)


def cpp_upscale(build, tmp_path, lr, n, H, W, **kw) -> np.ndarray:
    out = tmp_path / "out.raw"
    r = probe(build, "upscale", tmp_path, lr, out=out, n=n, **kw)
    assert r.returncode == 0, r.stderr
    return np.fromfile(out, np.uint8).reshape(n, H, W, 3)


def cpp_latents(build, tmp_path, lr, shape, **kw) -> np.ndarray:
    out = tmp_path / "z.raw"
    r = probe(build, "latents", tmp_path, lr, out=out, **kw)
    assert r.returncode == 0, r.stderr
    return np.fromfile(out, np.float32).reshape(shape)


CASES = [  # scale, backproject, sampler, eta, fidelity, latent tile/overlap (None: chosen)
    (2.0, 10, "dpm++2m", 1.0, 0.0, None),
    (3.7, 0, "dpm++2m", 1.0, 0.75, None),   # fidelity: the window (3 steps: (1, 1), from cond, exit)
    (8.0, 10, "ddim", 1.0, 0.0, None),
    (3.7, 10, "ddim", 0.5, 0.75, (8, 4)),    # forced latent tiles: encoder, U-Net, decoder and bands; DDIM's step
    (2.0, 0, "dpm++2m", 1.0, 0.0, (8, 4)),  # noise and the fidelity window too
]


@pytest.mark.parametrize("scale,bp,sampler,eta,fidelity,tiles", CASES)
def test_tiny_upscale_equals_python(cpp_build, tmp_path, sr_pipe, sr_engines, scale, bp, sampler, eta, fidelity,
                                    tiles):
    lr = lr_crop(20, 28)
    kw = dict(steps=3, seed=11, eta=eta, sampler=sampler, fidelity=fidelity)
    tile_kw = dict(latent_tile=tiles[0], latent_overlap=tiles[1]) if tiles else {}
    py = np.stack(sr_pipe.upscale(lr, scale=scale, num_samples=2, backproject=bp, output="array", **kw, **tile_kw))
    ck = dict(dir=sr_engines, scale=scale, bp=bp, **kw, **({"lt": tiles[0], "lo": tiles[1]} if tiles else {}))
    cpp = cpp_upscale(cpp_build, tmp_path, lr, 2, *py.shape[1:3], **ck)
    assert np.array_equal(cpp, py), f"{int((cpp != py).sum())} of {py.size} values differ"
    zp = sr_pipe.upscale_latents(lr, num_samples=2, **kw, **tile_kw)
    zc = cpp_latents(cpp_build, tmp_path, lr, zp.shape, n=2, **{k: v for k, v in ck.items() if k not in ("scale", "bp")})
    assert np.abs(zc - zp).max() <= 1e-5


def test_tiny_size_and_odd_input(cpp_build, tmp_path, sr_pipe, sr_engines):
    """An output size instead of a scale, and an LR whose sides need mirror padding."""
    lr = lr_crop(13, 9)
    py = sr_pipe.upscale(lr, size=(41, 50), steps=2, seed=5, output="array")[0]
    cpp = cpp_upscale(cpp_build, tmp_path, lr, 1, 50, 41, dir=sr_engines, size="41x50", steps=2, seed=5)[0]
    assert np.array_equal(cpp, py)


@pytest.mark.parametrize("latent,fidelity", [(None, None), ((16, 24), 1.0)])
def test_generate_equals_python(cpp_build, tmp_path, runtime_exports, latent, fidelity):
    """None: each side's generation default (ldmind_generate_options_init), at 8 steps, where
    upscale's default fidelity would end the window one step early; 1.0: the window's exit."""
    from runtime import Pipeline

    engines = runtime_exports["gen"]["engines"]
    pipe = Pipeline.load(engines, backend="cpu")
    kw = dict(steps=8 if fidelity is None else 3, seed=4, sampler="ddim",
              **({} if fidelity is None else {"fidelity": fidelity}))
    py = np.stack(pipe.generate((30, 22), num_samples=2, latent_size=latent, **kw))
    out = tmp_path / "gen.raw"
    extra = {"latent": f"{latent[0]}x{latent[1]}"} if latent else {}
    r = probe(cpp_build, "generate", tmp_path, dir=engines, size="30x22", n=2, out=out, **kw, **extra)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.fromfile(out, np.uint8).reshape(py.shape), py)


@pytest.fixture(scope="module")
def shipped_engines(tmp_path_factory):
    """The shipped model (ldmind_ref/weights/small.safetensors) exported once."""
    out = tmp_path_factory.mktemp("shipped") / "small"
    r = subprocess.run([sys.executable, "-m", "export", "--checkpoint", str(ROOT / "ldmind_ref/weights/small.safetensors"),
                        "--out", str(out), "--no-check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.mark.parametrize("scale,bp", [(2.0, 10), (3.7, 0), (8.0, 10)])
def test_shipped_model_equals_python(cpp_build, tmp_path, shipped_engines, scale, bp):
    from runtime import Pipeline

    pipe = Pipeline.load(shipped_engines, backend="cpu")
    lr = lr_crop(16, 20, "skimage-astronaut.jpg")
    py = pipe.upscale(lr, scale=scale, steps=3, seed=2, backproject=bp, output="array")[0]
    cpp = cpp_upscale(cpp_build, tmp_path, lr, 1, *py.shape[:2], dir=shipped_engines, scale=scale, steps=3, seed=2,
                      bp=bp)[0]
    assert np.array_equal(cpp, py)
    zp = pipe.upscale_latents(lr, steps=3, seed=2)
    zc = cpp_latents(cpp_build, tmp_path, lr, zp.shape, dir=shipped_engines, steps=3, seed=2)
    assert np.abs(zc - zp).max() <= 1e-5


def test_eight_threads_equal_serial(cpp_build, tmp_path, sr_engines):
    r = probe(cpp_build, "threads", tmp_path, lr_crop(20, 28), dir=sr_engines, scale=3, steps=2, threads=8)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "8 threads: 0 differ" in r.stdout


def _copy_engines(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["missing", "not_dir", "no_manifest", "graph_byte", "graph_gone", "version",
                                    "not_json"])
def test_engine_refusals_equal_python(cpp_build, tmp_path, sr_engines, damage):
    """ldmind_open refuses a bad engine directory with the Python runtime's line (status 2)."""
    import json

    from runtime import Pipeline
    from runtime.errors import EngineError

    d = tmp_path / "engines"
    if damage == "missing":
        pass
    elif damage == "not_dir":
        d.write_text("x")
    else:
        _copy_engines(sr_engines, d)
        m = json.loads((d / "manifest.json").read_text())
        if damage == "no_manifest":
            (d / "manifest.json").unlink()
        elif damage == "graph_byte":
            f = d / m["graphs"]["decoder"]["file"]
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 1
            f.write_bytes(bytes(data))
        elif damage == "graph_gone":
            (d / m["graphs"]["liif"]["file"]).unlink()
        elif damage == "version":
            m["format_version"] = 2
            (d / "manifest.json").write_text(json.dumps(m))
        elif damage == "not_json":
            (d / "manifest.json").write_text("{ not json")
    with pytest.raises(EngineError) as e:
        Pipeline.load(d, backend="cpu")
    r = probe(cpp_build, "upscale", tmp_path, lr_crop(8, 8), dir=d, scale=2)
    assert r.returncode == 10 + 2, r.stderr
    line = r.stderr.strip().split(": ", 1)[1]
    if damage == "not_json":      # the JSON parsers word their complaint differently
        assert line.startswith(f"{d}/manifest.json: not readable JSON (") and str(e.value).startswith(line[:40])
    else:
        assert line == str(e.value)


# schema violations (export/manifest.schema.json): the C++ loader walks the table generated from
# the schema (runtime/cpp/src/manifest_schema.hpp) and must say what export.manifest says
SCHEMA_DAMAGES = {
    "scale-abc": lambda m: m.__setitem__("scale_factor", "abc"),
    "scale-null": lambda m: m.__setitem__("scale_factor", None),
    "sha-null": lambda m: m["graphs"]["decoder"].__setitem__("sha256", None),
    "sha-newline": lambda m: m["graphs"]["liif"].__setitem__("sha256", "a" * 64 + "\n"),
    "timesteps-str": lambda m: m["schedule"].__setitem__("timesteps", "1000"),
    "latent-bool": lambda m: m["latent"].__setitem__("z_channels", True),
    "latent-float": lambda m: m["latent"].__setitem__("tile_align", 2.0),
    "no-schedule": lambda m: m.pop("schedule"),
    "no-sha": lambda m: m["graphs"]["decoder"].pop("sha256"),
    "file-up": lambda m: m["graphs"]["liif"].__setitem__("file", "../liif.onnx"),
    "file-dots": lambda m: m["graphs"]["liif"].__setitem__("file", ".."),
    "alpha-above-1": lambda m: m["schedule"]["alpha_bar"].__setitem__(3, 1.5),
    "alpha-rising": lambda m: m["schedule"]["alpha_bar"].__setitem__(9, m["schedule"]["alpha_bar"][1]),
    "generation-3": lambda m: m["latent"].__setitem__("generation_latent", [1, 2, 3]),
    "tensorrt-list": lambda m: m.__setitem__("tensorrt", [1]),
    "precision": lambda m: m.__setitem__("precision", "bf16"),
    "profile-short": lambda m: m["graphs"]["liif"]["profile"].__setitem__("Q", [1, 2]),
    "memory-empty": lambda m: m["graphs"]["decoder"]["cost"].__setitem__("memory", []),
    "shape-float": lambda m: m["graphs"]["decoder"]["inputs"][0]["shape"].__setitem__(1, 2.0),
    "two-graphs": lambda m: (m["graphs"]["liif"].__setitem__("sha256", 1), m["graphs"]["unet_step"].__setitem__("sha256", 2)),
}


@pytest.mark.parametrize("damage", SCHEMA_DAMAGES)
def test_schema_refusals_equal_python(cpp_build, tmp_path, sr_engines, damage):
    from runtime import Pipeline
    from runtime.errors import EngineError

    d = _copy_engines(sr_engines, tmp_path / "engines")
    m = json.loads((d / "manifest.json").read_text())
    SCHEMA_DAMAGES[damage](m)
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError) as e:
        Pipeline.load(d, backend="cpu")
    r = probe(cpp_build, "upscale", tmp_path, lr_crop(8, 8), dir=d, scale=2)
    assert r.returncode == 10 + 2, r.stderr
    assert r.stderr.strip().split(": ", 1)[1] == str(e.value)


@pytest.mark.parametrize("kw,python", [
    (dict(steps=0), dict(steps=0)),
    (dict(steps=2, sampler="ddim", eta=50), dict(steps=2, sampler="ddim", eta=50.0)),
    (dict(fidelity=1.5), dict(fidelity=1.5)),
    (dict(fidelity=-0.25), dict(fidelity=-0.25)),
    (dict(sampler="euler"), dict(sampler="euler")),
    (dict(n=0), dict(num_samples=0)),
    (dict(bp=101), dict(backproject=101)),
    (dict(lt=7, lo=2), dict(latent_tile=7, latent_overlap=2)),
    (dict(schedule="paper", steps=1, sampler="ddim"), dict(schedule="paper", steps=1, sampler="ddim")),
])
def test_option_refusals_equal_python(cpp_build, tmp_path, sr_pipe, sr_engines, kw, python):
    from runtime.errors import InputError

    lr = lr_crop(8, 8)
    with pytest.raises(InputError) as e:
        sr_pipe.upscale(lr, scale=2, output="array", **python)
    r = probe(cpp_build, "upscale", tmp_path, lr, dir=sr_engines, scale=2, **kw)
    assert r.returncode == 10 + 1, r.stderr
    assert r.stderr.strip().split(": ", 1)[1] == str(e.value)


def test_no_leak_over_20_upscales(tmp_path, sr_engines):
    """LeakSanitizer (gcc's -fsanitize=leak) over 20 upscales on one pipeline: nothing the
    library allocated is left unreachable at exit."""
    build = cpp_build_dir("lsan", "-fsanitize=leak -g")
    lr_crop(12, 16).tofile(tmp_path / "lr.raw")
    r = subprocess.run([str(build / "ldmind_probe"), "repeat", f"dir={sr_engines}", "scale=2", "steps=2", "count=20",
                        f"in={tmp_path / 'lr.raw'}", "w=16", "h=12"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "LDMIND_MEMORY_LIMIT": MEMORY, "LSAN_OPTIONS": "exitcode=23"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LeakSanitizer" not in r.stderr


def test_cpp_api_service_example_equals_python(cpp_build, tmp_path, sr_pipe, sr_engines):
    """The C++ API (ldmind.hpp) in runtime/cpp/examples/service.cpp: 4 threads, one pipeline,
    request k with seed + k, each equal to the Python runtime's image."""
    lr = lr_crop(20, 28)
    lr.tofile(tmp_path / "lr.raw")
    r = subprocess.run([str(cpp_build / "ldmind_service_example"), str(sr_engines), str(tmp_path / "lr.raw"), "28",
                        "20", "2.5", "9", "4", str(tmp_path / "req")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for k in range(4):
        py = sr_pipe.upscale(lr, scale=2.5, steps=3, seed=9 + k, output="array")[0]
        assert np.array_equal(np.fromfile(tmp_path / f"req_{k}.raw", np.uint8).reshape(py.shape), py), k


def test_progress_events_equal_python_and_cancel(cpp_build, tmp_path, sr_pipe, sr_engines):
    """The progress callback sees the Python runtime's events (stage, done, total) in the same
    order; returning non-zero cancels the call (status 5) and nothing is written."""
    lr = lr_crop(20, 28)
    events = []
    sr_pipe.upscale(lr, scale=3, steps=3, output="array", latent_tile=8, latent_overlap=4,
                    progress=lambda s, d, t: events.append(f"progress {s} {d} {t}"))
    kw = dict(dir=sr_engines, scale=3, steps=3, lt=8, lo=4)
    r = probe(cpp_build, "upscale", tmp_path, lr, progress=1, **kw)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == events
    out = tmp_path / "cancelled.raw"
    r = probe(cpp_build, "upscale", tmp_path, lr, cancel_after=len(events) // 2, out=out, **kw)
    assert r.returncode == 10 + 5 and "cancelled" in r.stderr and not out.exists()


def test_bench_cpp_runs(cpp_build, tmp_path, sr_engines):
    """``python -m runtime.programs.bench_cpp`` (the C++ vs Python table of docs/BENCHMARKS.md) on the
    tiny model: both sides profiled, every stage reported."""
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "runtime.programs.bench_cpp", "--engines", str(sr_engines), "--crop", "16",
                        "--scale", "2", "--steps", "2", "--rounds", "1", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    from runtime.profile import STAGES
    for run in ("python:cpu", "cpp:cpu"):
        assert set(STAGES) <= set(res["median_s"][run]) and res["median_s"][run]["total"] > 0
        assert res["graph_backends"][run] == {g: "cpu" for g in ("encoder", "unet_step", "decoder", "liif")}
        assert len(res["per_round"][run]) == 1 and res["per_round"][run][0]["load1"] >= 0
    assert "python:cpu / cpp:cpu" in r.stdout


@pytest.mark.parametrize("message", ["Protobuf parsing failed.", "std::bad_alloc", "Failed to allocate memory for x"])
def test_load_and_run_errors_equal_python(cpp_build, message):
    """One wording per failure, in one function per language (C++ core's load_error/run_error,
    Python's base.load_error/Engine._error) for every backend: the same line and class (out of
    memory: LDMIND_ERR_MEMORY, else LDMIND_ERR_ENGINE) from the same library message."""
    from pathlib import Path

    from runtime.backends.base import Engine, OutOfMemory, load_error

    path = "/engines/x y/unet_step.onnx"
    r = subprocess.run([str(cpp_build / "ldmind_internals"), "errors", path, "openvino", "unet_step", "openvino-bf16",
                        message], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    engine = Engine("unet_step", [], [])
    engine.backend = "openvino-bf16"
    want = []
    for kind, e in (("load", load_error(Path(path), "openvino", RuntimeError(message))),
                    ("run", engine._error(RuntimeError(message)))):
        want.append(f"{kind} {3 if isinstance(e, OutOfMemory) else 2} {e}")
    assert r.stdout.splitlines() == want
    assert want[0].startswith("load 3 " if "alloc" in message else "load 2 ")
