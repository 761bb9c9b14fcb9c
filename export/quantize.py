"""int8 graphs (``python -m export --int8``): ONNX Runtime static quantization, QDQ format,
per-channel weights, calibrated on each graph's recorded real inputs (``export.calibration``).

What is quantized (``INT8_POLICY``): the convolutions and the linear layers (Conv, Gemm,
MatMul with a weight), where the arithmetic is.  Everything else stays float32 because it
is not in ``QUANTIZED_OP_TYPES``: GroupNorm (InstanceNormalization), SiLU, softmax, the
timestep embedding's sin/cos, the DDIM/solver update at the end of ``unet_step``, and all
of LIIF's coordinate math and ensemble weights.  On top of that, nodes whose int8 error was
measured to break the graph are kept float by name (``Int8Policy.keep_float``), and the
attention products (MatMul of two activations: q.k and the weighted values) always are.

Parameters follow ONNX Runtime's advice for x86 CPUs without VNNI (the machines this was
written on had AVX2 only): uint8 activations, int8 weights per output channel, weights in
7 bits (``reduce_range``) so that AVX2's 16-bit intermediate sums cannot saturate.  On a CPU
with VNNI, full 8-bit weights would be safe; not measured (docs/BENCHMARKS.md, *int8*).
Graph inputs and outputs stay float32: the runtime never changes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onnx_export import ExportError

QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul")
# The largest error of an int8 graph against its fp32 self that an export accepts:
# ||int8 - fp32|| / ||fp32|| over the held-out photos' inputs (``graph_error``).
INT8_TOLERANCE = 0.2

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class Int8Policy:
    """Which nodes of a graph stay float beyond the op types never quantized:
    ``keep_float`` = ((node-name substring, why), ...), found by measuring the graph's
    error against fp32 (docs/EXPORT.md, *int8 policy*)."""
    keep_float: tuple[tuple[str, str], ...] = ()


INT8_POLICY: dict[str, Int8Policy] = {
    "encoder": Int8Policy(),
    "unet_step": Int8Policy((
        # measured on the shipped model (docs/BENCHMARKS.md): conv_in alone halves the error
        ("/conv_in/", "its input concatenates z_t and cond, whose ranges differ: one uint8 scale "
                      "for both costs half the step's accuracy"),
        ("/unet/conv_out/", "it outputs eps, which pred_z0 multiplies by sqrt(1 - a)/sqrt(a) (up to "
                            "14x at the noisiest step)"))),
    "decoder": Int8Policy(),
    "liif": Int8Policy(),
}


def float_nodes(model, policy: Int8Policy) -> dict[str, str]:
    """{node name: why it stays float} among the nodes of ``QUANTIZED_OP_TYPES``."""
    weights = {i.name for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type not in QUANTIZED_OP_TYPES:
            continue
        if n.op_type == "MatMul" and not any(i in weights for i in n.input):
            out[n.name] = "attention product (two activations)"
            continue
        for pattern, why in policy.keep_float:
            if pattern in n.name:
                out[n.name] = why
                break
    return out


class QuantizationError(ExportError):
    """An int8 graph too far from its fp32 self: the export fails rather than ship it."""


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: list[Feed]):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def quantize_graph(src: Path, dst: Path, feeds: list[Feed], policy: Int8Policy) -> dict[str, str]:
    """Write the int8 version of graph ``src`` to ``dst``, calibrated (min/max) on ``feeds``;
    returns the quantizable nodes kept float, with why."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(src))
    keep = float_nodes(model, policy)
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(feeds)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        quantize_static(
            str(src), str(tmp), reader, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OP_TYPES), per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(keep))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
        for f in dst.parent.glob("augmented_model*.onnx"):   # older ORT leaves its calibration graph
            f.unlink(missing_ok=True)
    return keep


def _session(path: Path, threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def graph_error(fp32: Path, int8: Path, feeds: list[Feed]) -> dict[str, float]:
    """The int8 graph against the fp32 one on ``feeds``, over all outputs and feeds:
    ``rel_rms`` = ||int8 - fp32|| / ||fp32|| and ``rel_max`` = max |int8 - fp32| / max |fp32|."""
    a, b = _session(fp32), _session(int8)
    names = [o.name for o in a.get_outputs()]
    diff2 = ref2 = 0.0
    dmax = rmax = 0.0
    for feed in feeds:
        for x, y in zip(a.run(names, feed), b.run(names, feed)):
            d = y.astype(np.float64) - x
            diff2 += float(np.sum(d * d))
            ref2 += float(np.sum(x.astype(np.float64) ** 2))
            dmax = max(dmax, float(np.abs(d).max()))
            rmax = max(rmax, float(np.abs(x).max()))
            if not np.isfinite(y).all():
                return {"rel_rms": float("inf"), "rel_max": float("inf")}
    return {"rel_rms": float(np.sqrt(diff2 / max(ref2, 1e-30))), "rel_max": dmax / max(rmax, 1e-30)}


def quantize_export(out_dir: Path, manifest: dict, plan, log=print) -> dict:
    """Replace the fp32 graphs of ``manifest`` (a validated fp32 manifest of ``out_dir``, not
    written, or removed first) by int8 ones and return the int8 manifest, to be validated
    and written by the caller.  Records calibration inputs (``calibration.record``),
    quantizes every graph with its ``INT8_POLICY`` and measures it against its fp32 self on
    the held-out photos' inputs; ``QuantizationError`` when one is beyond ``INT8_TOLERANCE``."""
    import copy
    import time

    from . import calibration
    from .manifest import sha256_file

    used = calibration.photos(plan)
    t0 = time.perf_counter()
    calib, held = calibration.record(out_dir, manifest, plan, used, log)
    log(f"  calibration inputs recorded in {time.perf_counter() - t0:.1f} s: "
        + ", ".join(f"{g} {len(v)} (+{len(held[g])} held out)" for g, v in calib.items()))
    out = copy.deepcopy(manifest)
    block = {"method": "onnxruntime quantize_static, QDQ, MinMax; activations uint8 per tensor, "
                       "weights int8 per output channel in 7 bits (reduce_range)",
             "op_types": list(QUANTIZED_OP_TYPES), "tolerance_rel_rms": INT8_TOLERANCE,
             "calibration": plan.to_json(used), "graphs": {}}
    for name, graph in out["graphs"].items():
        t0 = time.perf_counter()
        src = out_dir / graph["file"]
        fp32 = out_dir / f"{name}.fp32.tmp"
        os.replace(src, fp32)
        try:
            keep = quantize_graph(fp32, src, calib[name], INT8_POLICY[name])
            err = graph_error(fp32, src, held[name])
        finally:
            fp32.unlink(missing_ok=True)
        block["graphs"][name] = {"error": err, "float_nodes": keep}
        graph.update(sha256=sha256_file(src), precision="int8")
        log(f"  {graph['file']:<15} int8 in {time.perf_counter() - t0:5.1f} s: against fp32 rel_rms "
            f"{err['rel_rms']:.2e}, rel_max {err['rel_max']:.2e}; {len(keep)} node(s) kept float")
        if not err["rel_rms"] <= INT8_TOLERANCE:
            raise QuantizationError(f"{src}: the int8 graph is {err['rel_rms']:.3g} (relative RMS) away from "
                                    f"fp32 on the held-out calibration inputs, beyond {INT8_TOLERANCE}")
    out["precision"] = "int8"
    out["quantization"] = block
    return out
