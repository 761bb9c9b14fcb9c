"""The ``openvino`` backend (runtime/backends/openvino.py) against ONNX Runtime's CPU backend on
the tiny exports, and how ``backend="auto"`` decides on it (runtime/backends/record.py)."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from export.feeds import random_feed
from export.specs import graph_specs
from runtime import EngineError, Pipeline
from runtime import engine as engine_mod
from runtime.backends import record as backend_record
from runtime.backends.base import graphs_of
from runtime.bundle import load_bundle


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


def _record(path, bundle, cpu: float, ov: float) -> None:
    key = backend_record.machine_key()
    path.write_text(json.dumps({key: {backend_record.model_key(bundle): {"seconds": {"cpu": cpu, "openvino": ov}}}}))


def test_auto_takes_openvino_only_where_recorded_faster(sr_engines, tmp_path, monkeypatch):
    record = tmp_path / "backends.json"
    monkeypatch.setenv(backend_record.RECORD_ENV, str(record))
    bundle = load_bundle(sr_engines)
    why = lambda: engine_mod.auto_unavailable_reason("openvino", bundle)   # noqa: E731
    pipe = Pipeline.load(sr_engines)                                   # no record: cpu
    assert pipe.backend == "cpu"
    assert "not measured faster than cpu" in pipe.skipped["openvino"]
    _record(record, bundle, cpu=1.0, ov=1.5)
    assert "measured slower than cpu" in why()
    _record(record, bundle, cpu=1.5, ov=1.0)
    assert why() is None
    assert Pipeline.load(sr_engines).backend == "openvino"
    # a record for another machine (other versions) or another model does not count
    data = json.loads(record.read_text())
    record.write_text(json.dumps({"another CPU | 2 CPUs | onnxruntime 0 | openvino 0": data[backend_record.machine_key()]}))
    assert "not measured" in why()
    record.write_text(json.dumps({backend_record.machine_key(): {"small/fp32": {"seconds": {"cpu": 2, "openvino": 1}}}}))
    assert "not measured" in why()
    record.write_text("not json")
    assert "not measured" in why()


def test_openvino_not_installed(sr_engines, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(EngineError, match=r"openvino is not installed; pip install 'ldmind\[openvino\]'"):
        Pipeline.load(sr_engines, backend="openvino")


def test_save_record_round_trip(sr_engines, tmp_path, monkeypatch):
    monkeypatch.setenv(backend_record.RECORD_ENV, str(tmp_path / "sub" / "backends.json"))
    bundle = load_bundle(sr_engines)
    path = backend_record.save(bundle, {"cpu": 2.0, "openvino": 1.0}, {"date": "today"})
    assert path.exists() and backend_record.not_faster("openvino", bundle) is None
    backend_record.save(bundle, {"cpu": 1.0, "openvino": 2.0})
    assert "slower" in backend_record.not_faster("openvino", bundle)


def test_precision_is_f32_unless_asked(sr_engines, monkeypatch):
    from runtime.backends import openvino as openvino_engine

    assert openvino_engine.precision() == "f32"
    monkeypatch.setenv(openvino_engine.PRECISION_ENV, "fp8")
    with pytest.raises(EngineError, match="LDMIND_OPENVINO_PRECISION='fp8': choose one of f32, bf16"):
        Pipeline.load(sr_engines, backend="openvino")
