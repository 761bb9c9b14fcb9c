"""The ``openvino`` backend (runtime/backends/openvino.py) against ONNX Runtime's CPU backend on
the tiny exports, fp32 and bf16 (how ``auto`` chooses among them: tests/test_runtime_choice.py).
Run in a pytest process of their own by tests/test_runtime_openvino.py."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from export.feeds import random_feed
from export.specs import graph_specs
from runtime import EngineError, Pipeline
from runtime.backends.base import graphs_of


@pytest.fixture(scope="module")
def pipes(sr_engines):
    return Pipeline.load(sr_engines, backend="cpu"), Pipeline.load(sr_engines, backend="openvino")


def _feeds(bundle, seed=0):
    """A random feed per graph at sizes none was traced at (batch 2, a 6 x 10 latent)."""
    from ldmind_ref.config import ModelConfig
    from export import feeds

    cfg = ModelConfig.from_dict(bundle.config)
    specs = graph_specs(bundle.z_channels, cfg.autoencoder.feature_channels, bundle.conditional)
    dims = feeds.dims_for(cfg, 2, (6, 10), queries=50)
    return {g: random_feed(specs[g], cfg, dims, seed) for g in graphs_of(bundle)}


def test_every_graph_matches_onnxruntime(pipes):
    cpu, ov = pipes
    assert ov.backend == "openvino" and ov.engines["liif"].backend == "openvino"
    for graph, feed in _feeds(cpu.bundle).items():
        want, got = cpu.engines[graph](feed), ov.engines[graph](feed)
        assert list(got) == list(want) == cpu.engines[graph].output_names
        for name in want:
            assert got[name].shape == want[name].shape and got[name].dtype == np.float32
            err = np.abs(got[name] - want[name]).max() / max(np.abs(want[name]).max(), 1e-6)
            assert err < 1e-4, (graph, name, err)


def test_bind_equals_full_feed_and_outputs_are_owned(pipes):
    _, ov = pipes
    feed = _feeds(ov.bundle, seed=3)["liif"]
    run = ov.engines["liif"].bind({"features": feed["features"]})
    a = run({"coord": feed["coord"], "cell": feed["cell"]})["rgb"]
    b = ov.engines["liif"](feed)["rgb"]
    np.testing.assert_array_equal(a, b)
    # the next call reuses the infer request: an earlier result must not change under it
    kept = a.copy()
    run({"coord": feed["coord"][:, ::-1].copy(), "cell": feed["cell"]})
    np.testing.assert_array_equal(a, kept)
    with pytest.raises(EngineError, match="unknown input"):
        ov.engines["decoder"]({"zz": np.zeros((1, 3, 4, 4), np.float32)})


def test_concurrent_calls_match_sequential(pipes):
    _, ov = pipes
    feeds = [_feeds(ov.bundle, seed=s)["unet_step"] for s in range(4)]
    want = [ov.engines["unet_step"](f)["z_prev"] for f in feeds]
    got: list = [None] * 4
    start = threading.Barrier(4)

    def work(i):
        start.wait()
        for _ in range(3):
            got[i] = ov.engines["unet_step"](feeds[i])["z_prev"]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


def test_upscale_matches_cpu(pipes):
    cpu, ov = pipes
    img = np.random.RandomState(5).randint(0, 256, (9, 14, 3)).astype(np.uint8)
    a, = cpu.upscale(img, scale=2.5, steps=3, seed=4)
    b, = ov.upscale(img, scale=2.5, steps=3, seed=4)
    assert a.shape == b.shape == (23, 35, 3)             # floor(2.5 * 9 + 0.5) x (2.5 * 14)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_openvino_not_installed(sr_engines, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(EngineError, match=r"openvino is not installed; pip install 'ldmind\[openvino\]'"):
        Pipeline.load(sr_engines, backend="openvino")


def test_bf16_backend_runs_every_graph_close_to_fp32(sr_engines, pipes):
    """``openvino-bf16``: every graph in bf16 (emulated where the CPU has no native bf16, the
    code path is the same); the tiny model's outputs stay within bf16's rounding of fp32."""
    cpu, _ = pipes
    bf = Pipeline.load(sr_engines, backend="openvino-bf16")
    assert bf.backend == "openvino-bf16" and set(bf.graph_backends.values()) == {"openvino-bf16"}
    for graph, feed in _feeds(cpu.bundle).items():
        want, got = cpu.engines[graph](feed), bf.engines[graph](feed)
        for name in want:
            err = np.abs(got[name] - want[name]).max() / max(np.abs(want[name]).max(), 1e-6)
            assert err < 0.1, (graph, name, err)         # bf16: 8 bits of mantissa, a few layers
    bf.close()


def test_static_limit_follows_the_weight_budget():
    from runtime.backends.openvino import STATIC_MAX, STATIC_WEIGHT_BUDGET, static_limit

    assert (STATIC_MAX, STATIC_WEIGHT_BUDGET) == (8, 512 << 20)
    assert static_limit(20 << 20) == 8           # small's U-Net: 25 copies would fit
    assert static_limit(100 << 20) == 5          # 512 // 100
    assert static_limit(456 << 20) == 2          # div2k-sr's U-Net: at least a group and its remainder
    assert static_limit(0) == 8


@pytest.mark.parametrize("backend", ["openvino", "openvino-bf16"])
def test_each_shape_runs_on_its_own_fixed_shape_copy_whatever_came_before(sr_engines, backend):
    """A call's result depends on its shapes only: the same feed gives the same bits on a fresh
    engine and on one that met other shapes first and dropped this shape's copy (at most
    ``max_static`` copies, least recently used dropped first)."""
    from runtime.backends.openvino import create_engines
    from runtime.bundle import load_bundle

    bundle = load_bundle(sr_engines)
    small, other = _feeds(bundle, seed=1)["unet_step"], _feeds(bundle, seed=2)["unet_step"]
    wide = {k: (np.concatenate([v, v[..., ::-1]], axis=-1) if v.ndim == 4 else v) for k, v in other.items()}
    one = {k: (v[:1] if v.ndim == 4 or k == "timestep" else v) for k, v in other.items()}
    fresh = create_engines(backend, bundle, graphs=["unet_step"])["unet_step"]
    want = fresh(small)
    assert [s["z_t"] for s in fresh.static_shapes] == [small["z_t"].shape]

    used = create_engines(backend, bundle, graphs=["unet_step"])["unet_step"]
    used.max_static = 2
    first = used(small)
    for feed in (wide, one):                    # two more shapes: small's copy is dropped
        used(feed)
    assert [s["z_t"] for s in used.static_shapes] == [wide["z_t"].shape, one["z_t"].shape]
    again = used(small)                         # compiled anew
    assert [s["z_t"] for s in used.static_shapes] == [one["z_t"].shape, small["z_t"].shape]
    for name in want:
        np.testing.assert_array_equal(first[name], want[name])
        np.testing.assert_array_equal(again[name], want[name])
    used(one)                                   # a hit moves its copy to the most recent end
    assert [s["z_t"] for s in used.static_shapes] == [small["z_t"].shape, one["z_t"].shape]
    fresh.close()
    used.close()


def test_bench_static_compares_fixed_shapes_with_the_dynamic_control(sr_engines, tmp_path):
    """``bench_static`` runs both ways on the tiny export: the control is the dynamic model
    (no fixed-shape copy made), the runtime's way makes them; both images agree within a grey
    level."""
    import json

    from runtime.programs import bench_static

    pipes = bench_static.pipelines(str(sr_engines), "openvino", 1)
    pipes["dynamic"].upscale(np.zeros((8, 8, 3), np.uint8), scale=2, steps=2)
    assert all(e.static_shapes == [] for e in pipes["dynamic"].engines.values())
    out = tmp_path / "s.json"
    assert bench_static.main(["--engines", str(sr_engines), "--backend", "openvino", "--photo", "24x16:2",
                              "--stages", "8:2", "--threads", "1", "--rounds", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["photo"][0]["max_diff"] <= 1 and r["photo"][0]["ratio"] > 0
    assert set(r["stages"][0]["ratio"]) == {"encoder", "unet_step", "decoder", "liif"}
