"""ONNX export (issue 3): every graph against the PyTorch reference in ONNX Runtime (CPU),
fp32 and fp16, at sizes the graphs were not traced at; the manifest and its validation;
the polygraphy CLI against saved reference outputs; the command line.

Error measure: rel = max |graph - reference| / max |reference| over an output (a relative
error of the output's range; elementwise ratios explode where the reference crosses 0).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export import feeds, graphs
from export.build import export_model, specs_for
from export.cli import main as cli_main
from export.manifest import MANIFEST_VERSION, ManifestError, load_manifest, sha256_file
from export.reference import polygraphy_atol, save_reference
from export.specs import DEFAULT_OPSET, MANIFEST_NAME
from ldmind_ref.config import ModelConfig, preset
from ldmind_ref.core import diffusion
from ldmind_ref.model import random_model

ROOT = Path(__file__).resolve().parents[1]
FP32_TOL, FP16_TOL = 1e-4, 1e-2
# (batch, latent (h, w)): two batch sizes, two latent sizes, none of them the traced
# example (batch 2, latent 4 x 6 for tiny) - this is what proves the axes are dynamic
CASES = [(1, (6, 10)), (3, (8, 4))]
SCALES = (1.3, 4.0, 17.0)


# -- fixtures: one export per precision per session -----------------------------------------
@pytest.fixture(scope="module")
def tiny():
    return random_model(preset("tiny"), seed=0)


@pytest.fixture(scope="module")
def ref32(tiny):
    return graphs.model_for(tiny, "fp32")


def _export(tmp_path_factory, model, name, precision):
    out = tmp_path_factory.mktemp(name)
    manifest = export_model(model, out, precision, log=lambda _: None)
    return out, manifest


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory, tiny):
    return _export(tmp_path_factory, tiny, "tiny32", "fp32")


@pytest.fixture(scope="module")
def fp16_dir(tmp_path_factory, tiny):
    return _export(tmp_path_factory, tiny, "tiny16", "fp16")


_SESSIONS: dict[str, ort.InferenceSession] = {}


def run_graph(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    key = f"{path}:{sha256_file(path)}"
    if key not in _SESSIONS:
        _SESSIONS[key] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sess = _SESSIONS[key]
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def compare(got: dict, ref: dict, tol: float, what: str) -> dict[str, float]:
    """Assert finite outputs of the reference's shapes within ``tol``; returns rel per output."""
    rels = {}
    for name, b in ref.items():
        a = got[name]
        assert a.shape == b.shape, f"{what} {name}: shape {a.shape}, reference {b.shape}"
        assert a.dtype == np.float32, f"{what} {name}: dtype {a.dtype}, the contract says float32"
        bad = ~np.isfinite(a)
        assert not bad.any(), f"{what} {name}: {bad.sum()} non-finite values, first at {np.argwhere(bad)[0]}"
        err = float(np.abs(a - b).max())
        rel = err / max(float(np.abs(b).max()), 1e-12)
        assert rel <= tol, f"{what} {name}: max abs {err:.3g}, rel {rel:.3g} > {tol}"
        rels[name] = rel
    return rels


def liif_queries(h, w, batch, scale, seed=0):
    """Pixel centres at ``scale`` (borders and corners always, the interior sampled) plus
    the exact image corners and edge midpoints."""
    coord, cell = feeds.query_points(h, w, scale, batch, limit=3000, seed=seed)
    c2, cell2 = feeds.edge_queries(batch, cell=float(cell[0, 0, 0]))
    return np.concatenate([coord, c2], 1), np.concatenate([cell, cell2], 1)


def feed_for(model, name, batch, latent, seed=0, scale=4.0, step_index=3):
    spec = specs_for(model)[name]
    coord, cell = liif_queries(latent[0], latent[1], batch, scale, seed)
    dims = feeds.dims_for(model.cfg, batch, latent, queries=coord.shape[1])
    # a mid-schedule step of a 20-step eta = 1 run: sigma_t > 0, so the noise input counts
    step = feeds.ddim_coefficients(model.cfg, steps=20, eta=1.0, index=step_index)
    return spec, feeds.random_feed(spec, model.cfg, dims, seed=seed, step=step, coord=coord, cell=cell)


# -- fp32: each graph against the reference --------------------------------------------------
@pytest.mark.parametrize("batch,latent", CASES)
@pytest.mark.parametrize("name", ["encoder", "unet_step", "decoder"])
def test_fp32_graph_matches_reference(fp32_dir, ref32, name, batch, latent):
    out, manifest = fp32_dir
    assert latent != (manifest["graphs"][name]["example"].get("h"), manifest["graphs"][name]["example"].get("w"))
    spec, feed = feed_for(ref32, name, batch, latent, seed=batch)
    if name == "unet_step":
        assert feed["sigma_t"][0] > 0
    compare(run_graph(out / f"{name}.onnx", feed), graphs.run_reference(ref32, name, spec, feed),
            FP32_TOL, f"{name} fp32 B={batch} latent={latent}")


@pytest.mark.parametrize("batch,latent", CASES)
@pytest.mark.parametrize("scale", SCALES)
def test_fp32_liif_matches_reference(fp32_dir, ref32, scale, batch, latent):
    out, _ = fp32_dir
    spec, feed = feed_for(ref32, "liif", batch, latent, seed=batch, scale=scale)
    got = run_graph(out / "liif.onnx", feed)
    compare(got, graphs.run_reference(ref32, "liif", spec, feed), FP32_TOL,
            f"liif fp32 x{scale} B={batch} latent={latent}")


def test_liif_degenerate_corner_has_no_nan(fp32_dir, ref32):
    """A 1 x 1 latent queried at its centre: all four neighbours collapse onto one cell with
    zero area, and only LIIF's + 1e-9 keeps the weights from 0/0 (the term the dynamo
    exporter's optimiser removed)."""
    out, _ = fp32_dir
    spec = specs_for(ref32)["liif"]
    coord, cell = feeds.edge_queries(2)
    dims = {"B": 2, "h": 1, "w": 1, "Q": coord.shape[1]}
    feed = feeds.random_feed(spec, ref32.cfg, dims, seed=3, coord=coord, cell=cell)
    compare(run_graph(out / "liif.onnx", feed), graphs.run_reference(ref32, "liif", spec, feed),
            FP32_TOL, "liif 1x1 latent")


def test_unet_step_without_noise_is_deterministic_ddim(fp32_dir, ref32):
    """eta = 0: sigma_t = 0 and the noise input has no effect."""
    out, _ = fp32_dir
    spec, feed = feed_for(ref32, "unet_step", 2, (6, 4), step_index=0)
    feed["sigma_t"][:] = 0.0
    a = run_graph(out / "unet_step.onnx", feed)
    feed["noise"] = feed["noise"] * 5.0
    b = run_graph(out / "unet_step.onnx", feed)
    np.testing.assert_array_equal(a["z_prev"], b["z_prev"])
    compare(a, graphs.run_reference(ref32, "unet_step", spec, feed), FP32_TOL, "unet_step eta=0")


# -- fp16 ------------------------------------------------------------------------------------
def _fp16_session_or_reason(path: Path):
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), None
    except Exception as e:  # ORT CPU may lack an fp16 kernel: report which, check what we can
        return None, str(e).splitlines()[0]


@pytest.mark.parametrize("name", ["encoder", "unet_step", "decoder", "liif"])
def test_fp16_graph_within_1e2(fp16_dir, ref32, name, capsys):
    out, manifest = fp16_dir
    assert manifest["precision"] == "fp16" and manifest["graphs"][name]["precision"] == "fp16"
    sess, reason = _fp16_session_or_reason(out / f"{name}.onnx")
    worst = {}
    for batch, latent in CASES:
        for scale in (SCALES if name == "liif" else (4.0,)):
            spec, feed = feed_for(ref32, name, batch, latent, seed=batch, scale=scale)
            ref = graphs.run_reference(ref32, name, spec, feed)
            if sess is None:
                # no ONNX Runtime kernel: check the same fp16 computation in PyTorch instead
                got = graphs.run_reference(graphs.model_for(ref32, "fp16"), name, spec, feed)
            else:
                got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
            rels = compare(got, ref, FP16_TOL, f"{name} fp16 x{scale} B={batch} latent={latent}")
            worst = {k: max(v, worst.get(k, 0.0)) for k, v in rels.items()}
    with capsys.disabled():
        where = "ONNX Runtime" if sess is None else "ONNX Runtime CPU"
        if sess is None:
            where = f"PyTorch fp16 (ONNX Runtime CPU cannot load it: {reason})"
        print(f"\n  fp16 {name} via {where}: max rel " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))


@pytest.mark.parametrize("name,scaled", [("unet_step", ("z_t", "cond", "noise")), ("decoder", ("z",)),
                                         ("liif", ("features",))])
def test_fp16_stays_finite_on_100x_inputs(fp16_dir, ref32, name, scaled):
    """Latents and features 100x their normal range: no overflow, still within 1e-2."""
    out, _ = fp16_dir
    spec, feed = feed_for(ref32, name, 2, (8, 8), seed=7)
    for k in scaled:
        feed[k] = feed[k] * np.float32(100.0)
    sess, reason = _fp16_session_or_reason(out / f"{name}.onnx")
    if sess is None:
        pytest.skip(f"ONNX Runtime CPU cannot run the fp16 {name} graph: {reason}")
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    compare(got, graphs.run_reference(ref32, name, spec, feed), FP16_TOL, f"{name} fp16 inputs x100")


def test_fp16_keeps_fp32_islands(fp16_dir):
    """The fp16 policy, read off the graphs: GroupNorm statistics (InstanceNormalization)
    and softmax take float32; LIIF's coordinate and weight math (Floor, Clip, Abs, the
    weight normalisation Div) is float32 while its MLP is float16; weights are float16."""
    out, _ = fp16_dir
    fp32_ops = {"InstanceNormalization", "Softmax", "Floor", "Clip", "Abs", "ReduceSum", "Sin", "Cos"}
    for name in ("encoder", "unet_step", "decoder", "liif"):
        m = onnx.shape_inference.infer_shapes(onnx.load(str(out / f"{name}.onnx")))
        types = {v.name: v.type.tensor_type.elem_type
                 for v in [*m.graph.value_info, *m.graph.input, *m.graph.output]}
        types.update({i.name: i.data_type for i in m.graph.initializer})
        seen = {}
        for n in m.graph.node:
            if n.op_type in fp32_ops | {"Conv", "Gemm"}:
                seen.setdefault(n.op_type, set()).add(types.get(n.input[0]))
        for op, dtypes in seen.items():
            want = onnx.TensorProto.FLOAT if op in fp32_ops else onnx.TensorProto.FLOAT16
            assert dtypes == {want}, f"{name}: {op} inputs are {dtypes}, policy wants {want}"
        half = sum(i.ByteSize() for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
        full = sum(i.ByteSize() for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
        assert half > 0.85 * (half + full), f"{name}: only {half}/{half + full} float weight bytes are float16"
    liif_ops = {n.op_type for n in onnx.load(str(out / "liif.onnx")).graph.node}
    assert {"Floor", "Clip", "MatMul"} <= liif_ops


def test_fp16_weights_take_half_the_bytes(fp32_dir, fp16_dir):
    def weight_bytes(path):
        return sum(i.ByteSize() for i in onnx.load(str(path)).graph.initializer
                   if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16))
    for name in ("encoder", "unet_step", "decoder", "liif"):
        a, b = (weight_bytes(d[0] / f"{name}.onnx") for d in (fp32_dir, fp16_dir))
        assert b < 0.56 * a, f"{name}: fp16 weights {b} bytes, fp32 {a}"


# -- graph files and manifest ----------------------------------------------------------------
def test_onnx_io_is_declared_and_symbolic(fp32_dir):
    out, manifest = fp32_dir
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST_NAME] + [f"{g}.onnx" for g in ("encoder", "unet_step", "decoder", "liif")])
    for name, g in manifest["graphs"].items():
        m = onnx.load(str(out / g["file"]))
        onnx.checker.check_model(m, full_check=True)
        assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in m.graph.initializer)
        assert m.opset_import[0].version == DEFAULT_OPSET
        for vi, decl in zip([*m.graph.input, *m.graph.output], g["inputs"] + g["outputs"]):
            dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            assert vi.name == decl["name"] and dims == decl["shape"], (name, vi.name, dims, decl)
            assert dims[0] == 1 or dims[0] == "B"  # batch symbolic (the [1] coefficients aside)
        assert g["example"].get("B") == 2


def test_manifest_contents(fp32_dir, tiny):
    out, manifest = fp32_dir
    assert load_manifest(out) == json.loads((out / MANIFEST_NAME).read_text()) == manifest
    assert manifest["format_version"] == MANIFEST_VERSION
    assert ModelConfig.from_dict(manifest["model"]["config"]) == tiny.cfg and manifest["model"]["name"] == "tiny"
    assert manifest["scale_factor"] == pytest.approx(0.75)
    lat = manifest["latent"]
    assert lat == {"z_channels": 3, "feature_channels": 8, "ae_downsample": 4, "cond_scale": 4,
                   "unet_multiple": tiny.unet.size_multiple, "conditional": True,
                   "generation_latent": [8, 8], "train_latent": 8, "tile_align": 2}
    # measured costs: tiny's U-Net attends at /2 and in the middle, the auto-encoder at latent size
    costs = {k: g["cost"] for k, g in manifest["graphs"].items() if "cost" in g}
    assert sorted(costs) == ["decoder", "encoder", "unet_step"]
    assert {a["stride"] for a in costs["unet_step"]["attention"]} == {2.0}
    assert {(a["stride"], a["blocks"]) for a in costs["decoder"]["attention"]} == {(1.0, 32)}
    assert all(c["macs_per_cell"] > 0 for c in costs.values())
    # working memory measured on the graphs: activations in every graph, attention scores
    # (a squared term) where the auto-encoder attends at latent size
    assert all(c["memory"] and min(a for a, _ in c["memory"]) > 0 for c in costs.values())
    assert max(b for _, b in costs["decoder"]["memory"]) > 0
    sched = manifest["schedule"]
    np.testing.assert_array_equal(np.array(sched["alpha_bar"]), diffusion.alpha_bar_for(tiny.cfg.diffusion))
    assert (sched["name"], sched["timesteps"]) == ("linear", 1000)
    assert manifest["liif"] == {"query_chunk": 4096}
    assert manifest["producer"]["opset"] == DEFAULT_OPSET and manifest["producer"]["torch"]
    assert manifest["tensorrt"] is None
    for name, g in manifest["graphs"].items():
        assert g["sha256"] == sha256_file(out / g["file"]) and g["precision"] == "fp32"
        assert set(g["profile"]) >= {"B"}


@pytest.fixture
def export_copy(fp32_dir, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(fp32_dir[0], out)
    return out


def test_tampered_graph_fails_validation(export_copy):
    path = export_copy / "unet_step.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="unet_step.onnx") as e:
        load_manifest(export_copy)
    assert "sha256" in str(e.value)
    load_manifest(export_copy, verify=False)  # hashing off: presence only


def test_manifest_errors_name_the_file(export_copy):
    (export_copy / "liif.onnx").unlink()
    with pytest.raises(ManifestError, match=r"liif\.onnx: missing"):
        load_manifest(export_copy)
    m = json.loads((export_copy / MANIFEST_NAME).read_text())
    for change, pattern in ((lambda d: d.update(format_version=MANIFEST_VERSION + 1), "format_version"),
                            (lambda d: d.pop("schedule"), "schedule"),
                            (lambda d: d["graphs"]["decoder"].pop("sha256"), "sha256"),
                            (lambda d: d["graphs"]["liif"].update(file="../liif.onnx"), "plain file name")):
        bad = json.loads(json.dumps(m))
        change(bad)
        (export_copy / MANIFEST_NAME).write_text(json.dumps(bad))
        with pytest.raises(ManifestError, match=pattern) as e:
            load_manifest(export_copy)
        assert str(export_copy / MANIFEST_NAME) in str(e.value)
    (export_copy / MANIFEST_NAME).unlink()
    with pytest.raises(ManifestError, match=MANIFEST_NAME):
        load_manifest(export_copy)


def test_manifest_module_is_torch_free():
    code = ("import sys, export.manifest, export.specs; "
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'ldmind_ref') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# -- generation model ------------------------------------------------------------------------
def test_generation_model_unet_step_without_cond(tmp_path_factory):
    model = random_model(preset("tiny-gen"), seed=1)
    out, manifest = _export(tmp_path_factory, model, "tinygen", "fp32")
    assert "encoder" not in manifest["graphs"] and not (out / "encoder.onnx").exists()
    names = [t["name"] for t in manifest["graphs"]["unet_step"]["inputs"]]
    assert names == ["z_t", "timestep", "alpha_bar_t", "alpha_bar_prev", "sigma_t", "noise"]
    assert manifest["latent"]["conditional"] is False
    ref = graphs.model_for(model, "fp32")
    for batch, latent in CASES:
        spec, feed = feed_for(ref, "unet_step", batch, latent)
        compare(run_graph(out / "unet_step.onnx", feed), graphs.run_reference(ref, "unet_step", spec, feed),
                FP32_TOL, f"tiny-gen unet_step B={batch} latent={latent}")


# -- polygraphy CLI against saved reference outputs -----------------------------------------
def _polygraphy(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("polygraphy")
    assert exe.exists(), f"polygraphy CLI not found beside {sys.executable}"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def test_polygraphy_cli_compares_graph_with_saved_reference(fp32_dir, tiny, tmp_path):
    out, _ = fp32_dir
    spec, feed = feed_for(tiny, "decoder", 1, (6, 10))
    inputs, outputs, values = save_reference(tiny, "decoder", spec, feed, tmp_path)
    args = ["run", str(out / "decoder.onnx"), "--onnxrt", "--load-inputs", str(inputs),
            "--load-outputs", str(outputs), "--atol", *polygraphy_atol(values, "fp32"), "--rtol", "0"]
    r = _polygraphy(*args)
    assert r.returncode == 0 and "PASSED" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    # the same comparison must fail against a reference that is off by 1 %
    from polygraphy.comparator import RunResults
    results = RunResults.load(str(outputs))
    for _, iterations in results.items():
        for it in iterations:
            it["features"] = it["features"] + 0.01 * float(np.abs(values["features"]).max())
    bad = tmp_path / "decoder.shifted.json"
    results.save(str(bad))
    r = _polygraphy(*[str(bad) if a == str(outputs) else a for a in args])
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]


# -- command line ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv,needle", [
    (["--preset", "nope", "--random-init", "--out", "x"], "unknown preset 'nope'"),
    (["--preset", "tiny", "--out", "x"], "--random-init"),
    (["--preset", "tiny", "--random-init", "--out", "x", "--opset", "99"], "--opset 99"),
    (["--checkpoint", "/nonexistent.safetensors", "--out", "x"], "does not exist"),
    (["--out", "x"], "one of the arguments --checkpoint --preset is required"),
])
def test_cli_bad_arguments_exit_2_with_one_line(argv, needle):
    r = subprocess.run([sys.executable, "-m", "export", *argv], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr


def test_cli_exports_a_checkpoint(tmp_path, tiny, fp32_dir, capsys):
    from ldmind_ref.checkpoint import save_model

    ckpt = tmp_path / "tiny.safetensors"
    save_model(ckpt, tiny)
    out = tmp_path / "engines" / "tiny"
    assert cli_main(["--checkpoint", str(ckpt), "--out", str(out), "--no-check", "--trt"]) == 0
    text = capsys.readouterr().out
    manifest = load_manifest(out)
    assert manifest["model"]["source"] == "checkpoint tiny.safetensors"
    if manifest["tensorrt"] is None:  # the CPU case: one line says why
        assert sum("TensorRT engines skipped" in line for line in text.splitlines()) == 1, text
    assert manifest["precision"] == "fp16"  # --trt builds from the fp16 graphs
    # same weights as the fixture: the fp16 decoder agrees with the fp32 graph to fp16 accuracy
    spec, feed = feed_for(tiny, "decoder", 1, (4, 4))
    compare(run_graph(out / "decoder.onnx", feed), run_graph(fp32_dir[0] / "decoder.onnx", feed),
            FP16_TOL, "checkpoint export decoder")


# -- TensorRT: plumbing only (no GPU, no tensorrt here) --------------------------------------
def test_tensorrt_profiles_from_specs(tiny):
    from export.trt_engines import profile_shapes

    p = profile_shapes(specs_for(tiny)["liif"])
    assert p["features"] == ((1, 8, 8, 8), (1, 8, 64, 64), (4, 8, 256, 256))
    assert p["coord"] == ((1, 1024, 2), (1, 65536, 2), (4, 65536, 2))
    step = profile_shapes(specs_for(tiny)["unet_step"])
    assert "alpha_bar_t" not in step and step["timestep"] == ((1,), (1,), (4,))


def test_tensorrt_build_plumbing_with_stand_ins(fp16_dir, tmp_path, monkeypatch):
    """The polygraphy/TensorRT calls replaced by stand-ins that record their arguments:
    checks what the real ones would be given, the files and the manifest entry."""
    import types

    import polygraphy.backend.trt as ptrt

    from export import trt_engines
    from export.manifest import validate

    out = tmp_path / "trt"
    shutil.copytree(fp16_dir[0], out)
    calls = []
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.99.0"))
    monkeypatch.setattr(trt_engines, "gpu_info", lambda: ("Stand-in GPU", "9.0"))
    monkeypatch.setattr(ptrt, "network_from_onnx_path",
                        lambda path, strongly_typed=False: calls.append(("parse", path, strongly_typed)) or path)
    monkeypatch.setattr(ptrt, "CreateConfig", lambda **kw: calls.append(("config", kw)) or kw)
    monkeypatch.setattr(ptrt, "engine_from_network", lambda net, config, save_timing_cache:
                        calls.append(("build", net, save_timing_cache)) or f"engine of {net}")
    monkeypatch.setattr(ptrt, "save_engine", lambda engine, path: Path(path).write_text(engine))
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    specs = specs_for(random_model(preset("tiny"), 0))
    files = {k: g["file"] for k, g in manifest["graphs"].items()}
    manifest["tensorrt"] = trt_engines.build_engines(out, specs, files, "fp16", log=lambda _: None)
    validate(manifest, out)
    trt = manifest["tensorrt"]
    assert (trt["version"], trt["gpu"], trt["compute_capability"]) == ("10.99.0", "Stand-in GPU", "9.0")
    assert sorted(trt["engines"]) == sorted(files)
    assert all(strong for kind, _, strong in (c for c in calls if c[0] == "parse")) and \
        sum(c[0] == "parse" for c in calls) == len(files)
    configs = [c[1] for c in calls if c[0] == "config"]
    assert all(c["load_timing_cache"] == str(out / "timing.cache") for c in configs)
    liif_profile = dict(configs[list(files).index("liif")]["profiles"][0])
    assert tuple(liif_profile["coord"].max) == (4, 65536, 2)
    assert trt["engines"]["liif"]["profiles"][0]["coord"] == {"min": [1, 1024, 2], "opt": [1, 65536, 2],
                                                              "max": [4, 65536, 2]}
    (out / "liif.engine").write_text("tampered")
    with pytest.raises(ManifestError, match="liif.engine"):
        validate(manifest, out)
