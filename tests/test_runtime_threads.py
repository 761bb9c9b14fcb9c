"""Threads, the torch-free guarantee, backend selection."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime import EngineError, Pipeline
from runtime.backends import onnxruntime as ort_backend
from runtime.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]


def test_two_threads_match_sequential_calls(runtime_exports):
    pipe = Pipeline.load(runtime_exports["sr"]["engines"], backend="cpu")
    rs = np.random.RandomState(8)
    jobs = [dict(image=rs.randint(0, 256, (9, 14, 3)).astype(np.uint8), scale=s, steps=4, eta=1.0, seed=s_, num_samples=2)
            for s, s_ in ((3.0, 1), (2.2, 2))]
    sequential = [pipe.upscale(**j) for j in jobs]
    for _ in range(2):                      # a couple of rounds: races are not deterministic
        results: list = [None, None]
        errors: list = []
        start = threading.Barrier(2)

        def work(i):
            try:
                start.wait()
                results[i] = pipe.upscale(**jobs[i])
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for seq, par in zip(sequential, results):
            for a, b in zip(seq, par):
                assert np.array_equal(a, b)


def test_runtime_never_imports_torch(runtime_exports, tmp_path):
    """A whole pipeline (load, upscale, generate, render, CLI, info) in a fresh process."""
    sr, gen = runtime_exports["sr"]["engines"], runtime_exports["gen"]["engines"]
    code = f"""
import sys
import numpy as np
from runtime import Pipeline
from runtime.cli import main
p = Pipeline.load({str(sr)!r})
[img] = p.upscale(np.zeros((8, 10, 3), np.uint8) + 100, scale=2.5, steps=3)
z = p.upscale_latents(np.zeros((8, 10, 3), np.uint8), steps=2)
p.render(z, [(5, 5), (30, 20)])
g = Pipeline.load({str(gen)!r})
g.generate((16, 16), steps=2, num_samples=2)
from PIL import Image
Image.fromarray(img).save({str(tmp_path / 'in.png')!r})
assert main(["upscale", {str(tmp_path / 'in.png')!r}, "--engines", {str(sr)!r}, "--scale", "2", "--steps", "2",
             "-q", "-o", {str(tmp_path / 'out.png')!r}]) == 0
assert main(["info", {str(sr)!r}]) == 0
import runtime.programs.bench, runtime.programs.bench_memory, runtime.programs.demo, runtime.backends.tensorrt  # every module
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.") or m in ("ldmind_ref.model", "ldmind_ref.sampler"))
assert not bad, bad
print("torch-free")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert "torch-free" in r.stdout


def test_auto_backend_says_what_it_skipped(runtime_exports):
    pipe = Pipeline.load(runtime_exports["sr"]["engines"])
    assert pipe.backend == "cpu"                  # no record, no measurement (conftest)
    assert pipe.graph_backends == {"encoder": "cpu", "unet_step": "cpu", "decoder": "cpu", "liif": "cpu"}
    assert {"tensorrt", "ort-trt", "cuda", "openvino-bf16"} <= set(pipe.skipped)
    assert "no TensorRT engines" in pipe.skipped["tensorrt"]
    assert "CUDAExecutionProvider" in pipe.skipped["cuda"]
    # bf16: no quality gate in a fresh export (or, on another CPU, no native bf16)
    assert "quality gate" in pipe.skipped["openvino-bf16"] or "no native bf16" in pipe.skipped["openvino-bf16"]
    assert pipe.backend_reason.startswith("auto: encoder cpu, unet_step cpu, decoder cpu, liif cpu; "
                                          "not measured (LDMIND_AUTO_MEASURE=0); skipped tensorrt")


@pytest.mark.parametrize("backend,pattern", [
    ("cuda", "no CUDAExecutionProvider"), ("ort-trt", "no TensorrtExecutionProvider"),
    ("tensorrt", "lists no TensorRT engines"), ("gpu", "unknown backend"),
])
def test_explicit_backend_unavailable(runtime_exports, backend, pattern):
    with pytest.raises(EngineError, match=pattern):
        Pipeline.load(runtime_exports["sr"]["engines"], backend=backend)


def test_trt_provider_profiles(runtime_exports):
    """The ORT TensorRT EP options are built from the manifest's profiles (not executed here)."""
    b = load_bundle(runtime_exports["sr"]["engines"])
    providers = ort_backend.providers("ort-trt", b, "liif")
    name, opts = providers[0]
    assert name == "TensorrtExecutionProvider"
    assert opts["trt_profile_min_shapes"] == "features:1x8x8x8,coord:1x1024x2,cell:1x1024x2"
    assert opts["trt_profile_max_shapes"] == "features:4x8x256x256,coord:4x65536x2,cell:4x65536x2"
    assert opts["trt_engine_cache_enable"] and not opts["trt_fp16_enable"]


def test_engine_checks_input_names(runtime_exports):
    pipe = Pipeline.load(runtime_exports["sr"]["engines"], backend="cpu")
    with pytest.raises(EngineError, match="unknown input"):
        pipe.engines["decoder"]({"zz": np.zeros((1, 3, 4, 4), np.float32)})
