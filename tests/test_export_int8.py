"""int8 export (issue 11): ``python -m export --int8`` quantizes the fp32 graphs (ONNX
Runtime static quantization, QDQ, per-channel weights), calibrated on real inputs recorded
while the fp32 runtime upscales photos; the manifest says int8, the runtime loads it
unchanged, and its outputs stay near fp32 - where a broken quantization does not.

The int8 export is made from the session's tiny SR export (``runtime_exports``, random
weights) with ``export.quantize.quantize_export``, the function ``export_model`` ends with,
calibrated on the photos in tests/data; the command line is tested for its refusals.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import TEST_DATA
from export import calibration, quantize
from export.cli import main as cli_main
from export.manifest import MANIFEST_NAME, load_manifest, validate, write_manifest
from ldmind_ref import metrics
from ldmind_ref.benchmark import load_hr

# PSNR-Y (dB) of the int8 pipeline's image against the fp32 pipeline's, same seed: what an
# int8 export must reach, and what a badly calibrated graph falls below (measured: 56.5 dB
# for the tiny int8 export, 37.4 dB with its decoder calibrated on 1000x too small inputs)
MIN_PSNR_VS_FP32 = 45.0
PLAN = dict(images=3, crop=32, per_graph=12, scales=(3.0, 2.0), steps=4)


def _plan(folder: Path = TEST_DATA) -> calibration.CalibrationPlan:
    return calibration.CalibrationPlan(folder, **PLAN)


def _copy_graphs(src: Path, dst: Path) -> dict:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.onnx"):
        shutil.copy(f, dst / f.name)
    return load_manifest(src)


@pytest.fixture(scope="module")
def int8_export(runtime_exports, tmp_path_factory):
    """(directory, manifest) of the tiny SR export quantized to int8."""
    out = tmp_path_factory.mktemp("tiny_int8")
    fp32 = _copy_graphs(runtime_exports["sr"]["engines"], out)
    manifest = quantize.quantize_export(out, fp32, _plan(), log=lambda _: None)
    validate(manifest, out)
    write_manifest(out, manifest)
    return out, manifest


@pytest.fixture(scope="module")
def lr_photo() -> np.ndarray:
    hr = load_hr(TEST_DATA / "skimage-astronaut.jpg")
    return np.ascontiguousarray(hr[96:136:, 96:136])        # 40 x 40, not a calibration crop


def _upscale(pipe, lr):
    return pipe.upscale(lr, scale=3, steps=4, seed=3, backproject=0, output="array")[0]


@pytest.fixture(scope="module")
def fp32_image(sr_pipe, lr_photo) -> np.ndarray:
    return _upscale(sr_pipe, lr_photo)


def test_manifest_says_int8(int8_export):
    out, m = int8_export
    assert load_manifest(out)["precision"] == "int8"          # sha256 of every int8 graph verified
    assert {g["precision"] for g in m["graphs"].values()} == {"int8"}
    q = m["quantization"]
    assert set(q["graphs"]) == {"encoder", "unet_step", "decoder", "liif"}
    assert all(Path(TEST_DATA / p).is_file() for p in q["calibration"]["photos"])
    for name, g in q["graphs"].items():
        assert 0 < g["error"]["rel_rms"] <= quantize.INT8_TOLERANCE, (name, g["error"])
    kept = q["graphs"]["unet_step"]["float_nodes"]
    assert any("/conv_in/" in k for k in kept) and any("/conv_out/" in k for k in kept), kept
    # graph I/O stays float32: the declared inputs/outputs are the fp32 export's
    assert all(t["dtype"] in ("float32", "int64") for g in m["graphs"].values() for t in g["inputs"] + g["outputs"])


def test_graphs_hold_qdq_nodes_with_per_channel_weights_and_float_islands(int8_export):
    out, m = int8_export
    for name, g in m["graphs"].items():
        model = onnx.load(str(out / g["file"]))
        inits = {i.name: i for i in model.graph.initializer}
        made_by = {o: n for n in model.graph.node for o in n.output}
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0, name
        float_nodes = m["quantization"]["graphs"][name]["float_nodes"]
        quantized = 0
        for n in model.graph.node:
            if n.op_type not in quantize.QUANTIZED_OP_TYPES:
                continue
            fed = [made_by.get(i) for i in n.input[:2]]
            from_dq = [f is not None and f.op_type == "DequantizeLinear" for f in fed]
            if n.name in float_nodes:
                assert not any(from_dq), (name, n.name)
                continue
            assert all(from_dq), (name, n.name)
            w = fed[1]
            assert onnx.numpy_helper.to_array(inits[w.input[0]]).dtype == np.int8
            if n.op_type == "Conv":             # one scale per output channel
                assert onnx.numpy_helper.to_array(inits[w.input[1]]).size > 1, (name, n.name)
            quantized += 1
        assert quantized > 0, name
        # what stays float is never rewritten into a quantized operator
        assert not any(op.startswith("QLinear") or op.endswith("Integer") for op in ops), name


def test_runtime_loads_int8_on_cpu_and_stays_near_fp32(int8_export, fp32_image, lr_photo):
    from runtime import Pipeline

    pipe = Pipeline.load(int8_export[0], backend="cpu")
    assert pipe.bundle.precision == "int8" and pipe.backend == "cpu"
    got = _upscale(pipe, lr_photo)
    assert got.shape == fp32_image.shape == (120, 120, 3) and got.dtype == np.uint8
    assert metrics.psnr_y(got, fp32_image, 3) >= MIN_PSNR_VS_FP32


def test_a_badly_calibrated_graph_falls_below_the_bound(int8_export, fp32_image, sr_pipe, lr_photo, tmp_path,
                                                        runtime_exports):
    """The bound above can fail: the decoder calibrated on inputs 1000x too small clips."""
    from runtime import Pipeline

    out = tmp_path / "bad"
    shutil.copytree(int8_export[0], out)
    z = np.random.default_rng(0).standard_normal((1, sr_pipe.bundle.z_channels, 8, 8)).astype(np.float32) * 1e-3
    quantize.quantize_graph(runtime_exports["sr"]["engines"] / "decoder.onnx", out / "decoder.onnx",
                            [{"z": z}], quantize.INT8_POLICY["decoder"])
    pipe = Pipeline.load(out, backend="cpu", verify=False)
    assert metrics.psnr_y(_upscale(pipe, lr_photo), fp32_image, 3) < MIN_PSNR_VS_FP32


def test_export_refuses_an_int8_graph_beyond_the_tolerance(runtime_exports, tmp_path, monkeypatch):
    record = calibration.record

    def shrunk(*args, **kwargs):
        calib, held = record(*args, **kwargs)
        return {g: [{k: v * 1e-3 if v.dtype == np.float32 else v for k, v in f.items()} for f in feeds]
                for g, feeds in calib.items()}, held
    monkeypatch.setattr(calibration, "record", shrunk)
    fp32 = _copy_graphs(runtime_exports["sr"]["engines"], tmp_path)
    with pytest.raises(quantize.QuantizationError, match="relative RMS"):
        quantize.quantize_export(tmp_path, fp32, calibration.CalibrationPlan(TEST_DATA, images=2, crop=16,
                                                                              per_graph=4), log=lambda _: None)
    assert not (tmp_path / MANIFEST_NAME).exists()


# -- command line: refusals, one line, exit 2, nothing written --------------------------------
def _cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = cli_main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def _folder(tmp_path: Path, kind: str) -> Path:
    d = tmp_path / "photos"
    if kind == "missing":
        return d
    if kind == "file":
        d.write_bytes(b"not a folder")
        return d
    d.mkdir()
    if kind == "one":
        shutil.copy(TEST_DATA / "skimage-coffee.jpg", d)
    if kind == "corrupt":
        shutil.copy(TEST_DATA / "skimage-coffee.jpg", d)
        (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return d


@pytest.mark.parametrize("extra,kind,needle", [
    (["--int8"], None, "--int8 needs --calibration DIR"),
    (["--int8", "--fp16", "--calibration", "{d}"], "one", "--int8 goes alone"),
    (["--int8", "--trt", "--calibration", "{d}"], "one", "--int8 goes alone"),
    (["--calibration", "{d}"], "one", "go with --int8"),
    (["--int8", "--calibration", "{d}", "--calibration-images", "1"], "one", "--calibration-images must be at least 2"),
    (["--int8", "--calibration", "{d}"], "missing", "does not exist"),
    (["--int8", "--calibration", "{d}"], "file", "is not a directory"),
    (["--int8", "--calibration", "{d}"], "empty", "holds 0 image(s)"),
    (["--int8", "--calibration", "{d}"], "one", "holds 1 image(s)"),
    (["--int8", "--calibration", "{d}"], "corrupt", "broken.png is not a readable image"),
])
def test_cli_refuses_bad_calibration_input(extra, kind, needle, tmp_path, capsys):
    d = _folder(tmp_path, kind) if kind else tmp_path / "unused"
    out = tmp_path / "engines"
    argv = ["--preset", "tiny", "--random-init", "--out", str(out)] + [a.format(d=d) for a in extra]
    rc, err = _cli(argv, capsys)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert not out.exists()


def test_precision_gate_program_measures_the_int8_graphs_beside_bf16(int8_export, runtime_exports, tmp_path):
    """``python -m runtime.programs.precision_gate --int8 DIR``: every int8 graph alone and the
    passing ones together, against fp32 on the same photos and seeds, recorded with the int8
    graphs' sha256 beside the bf16 rows; an fp32 export given as --int8 is refused."""
    pytest.importorskip("openvino")
    import json

    from runtime.programs import precision_gate as program

    val = tmp_path / "val" / "Photos"
    val.mkdir(parents=True)
    for name in ("skimage-coffee.jpg", "scipy-raccoon.jpg"):
        (val / name).symlink_to(TEST_DATA / name)
    out = tmp_path / "gate.json"
    args = ["--engines", str(runtime_exports["sr"]["engines"]), "--val", str(val.parent), "--per-set", "2",
            "--side", "32", "--threads", "1", "--out", str(out)]
    assert program.main([*args, "--int8", str(int8_export[0])]) == 0
    res = json.loads(out.read_text())
    graphs = ["encoder", "unet_step", "decoder", "liif"]
    assert set(res["precisions"]) == {"bf16", "int8"}
    for p in ("bf16", "int8"):
        per = res["precisions"][p]["per_graph"]
        assert list(per) == graphs
        for g in graphs:
            lost = {k: res["psnr_y"]["fp32"][k] - res["psnr_y"][f"{p} {g}"][k] for k in ("raw", "defaults")}
            assert per[g]["raw_loss_db"] == pytest.approx(lost["raw"], abs=1e-4)
            assert per[g]["pass"] == (lost["raw"] <= 0.2 and lost["defaults"] <= 0.1)
    int8 = res["precisions"]["int8"]
    assert int8["graphs_sha256"] == {g: s["sha256"] for g, s in int8_export[1]["graphs"].items()}
    assert int8["graphs_sha256"] != res["graphs_sha256"]          # measured on the int8 graphs, not fp32
    with pytest.raises(SystemExit) as e:
        program.main([*args, "--int8", str(runtime_exports["sr"]["engines"])])
    assert e.value.code == 2
