"""Export a model into a directory: the graphs, a self-check, optional TensorRT engines,
and ``manifest.json`` (written last: its presence marks a complete export)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch

from ldmind_ref import costs
from ldmind_ref.core import diffusion
from ldmind_ref.model import LDMind

from . import activations, feeds, graphs, manifest as mf, quantize, trt_engines
from .onnx_export import DEFAULT_OPSET, ExportError, export_graph
from .specs import GRAPH_NAMES, MANIFEST_NAME, PRECISION_GATE_NAME, GraphSpec, graph_specs

# The self-check's bound on max |graph - reference| / max |reference| per output.  fp32
# differs from PyTorch by summation order only; fp16 by half-precision rounding.  (int8
# graphs are self-checked as the fp32 graphs they are made from, then measured against
# those on real inputs: ``export.quantize``.)
CHECK_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}


def specs_for(model: LDMind) -> dict[str, GraphSpec]:
    ae = model.cfg.autoencoder
    return graph_specs(ae.z_channels, ae.feature_channels, model.cfg.unet.conditional)


def example_dims(model: LDMind, name: str, batch: int = 2) -> dict[str, int]:
    """The sizes graph ``name`` is traced at: batch 2 (a batch of 1 invites an exporter to
    fix it), small non-square latents - the trace runs the network once, on the CPU, in
    fp16 for --fp16 graphs, which PyTorch's CPU kernels do slowly - and 64 queries.

    U-Net: (1, 2) U-Net units; the others: (2, 3) latent cells, in steps that an LR image
    reaches (x cond_scale, / ae_downsample)."""
    r = model.cfg.latent_per_lr_pixel
    if name == "unet_step":
        m = math.lcm(model.unet.size_multiple, r)
        latent = (m, 2 * m)
    else:
        latent = (2 * r, 3 * r)
    return feeds.dims_for(model.cfg, batch, latent, queries=64)


def check_dims(model: LDMind) -> dict[str, int]:
    """Sizes of the post-export self-check, different from every graph's example: batch 1,
    a latent of (3, 1) U-Net units, 37 (+ 9 edge) queries."""
    r = model.cfg.latent_per_lr_pixel
    u = math.lcm(model.unet.size_multiple, r)
    return feeds.dims_for(model.cfg, 1, (3 * u, u), queries=37)


def self_check(model: LDMind, precision: str, out_dir: Path, specs: dict[str, GraphSpec],
               files: dict[str, str]) -> dict[str, float]:
    """Run every saved graph with ONNX Runtime at sizes it was not traced at and compare
    it with the fp32 reference; returns the relative error per graph."""
    import onnxruntime as ort

    dims = check_dims(model)
    h, w = dims["h"], dims["w"]
    errors = {}
    for name, spec in specs.items():
        coord, cell = feeds.query_points(h, w, 2.5, dims["B"], limit=dims["Q"])
        corners, ccell = feeds.edge_queries(dims["B"])
        feed = feeds.random_feed(spec, model.cfg, dims, seed=1,
                                 coord=np.concatenate([coord, corners], 1),
                                 cell=np.concatenate([cell, ccell], 1))
        ref = graphs.run_reference(model, name, spec, feed)
        sess = ort.InferenceSession(str(out_dir / files[name]), providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        worst = 0.0
        for t in spec.outputs:
            a, b = got[t.name], ref[t.name]
            if a.shape != b.shape or not np.isfinite(a).all():
                raise ExportError(f"{out_dir / files[name]}: self-check at {dims}: output {t.name} "
                                  f"has shape {a.shape} (reference {b.shape}) or non-finite values")
            worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)))
        if worst > CHECK_TOLERANCE[precision]:
            raise ExportError(f"{out_dir / files[name]}: self-check at {dims}: relative error {worst:.3g} "
                              f"> {CHECK_TOLERANCE[precision]} against the PyTorch reference")
        errors[name] = worst
    return errors


def _producer(opset: int) -> dict[str, Any]:
    try:
        from importlib.metadata import version
        ldmind = version("ldmind")
    except Exception:  # running from a source tree that is not installed
        ldmind = "0.1.0+source"
    return {"ldmind": ldmind, "torch": torch.__version__, "onnx": onnx.__version__, "opset": opset}


def memory_costs(model: LDMind, out_dir: Path, specs: dict[str, GraphSpec], files: dict[str, str]
                 ) -> dict[str, list[list[float]]]:
    """Working memory terms of the latent graphs as saved (``export.activations``), measured at
    latents of 32 and 64 cells (rounded up to the tile alignment): large enough that every
    attention layer's query blocks hold several rows, so its scores grow with the square."""
    align = model.cfg.tile_align
    side = -(-32 // align) * align
    return {name: activations.memory_terms(out_dir / files[name], specs[name], model.cfg, side)
            for name in specs if name != "liif"}


def build_manifest(model: LDMind, precision: str, opset: int, graph_entries: dict[str, Any],
                   tensorrt: dict[str, Any] | None, source: str, memory: dict[str, list]) -> dict[str, Any]:
    cfg, ae, d = model.cfg, model.cfg.autoencoder, model.cfg.diffusion
    n = cfg.train_latent
    for name, cost in costs.graph_costs(model).items():   # what tiling and memory checks need
        graph_entries[name]["cost"] = {**cost, "memory": memory[name]}
    return {
        "format_version": mf.MANIFEST_VERSION,
        "model": {"name": cfg.name, "config": cfg.to_dict(), "source": source},
        "scale_factor": float(model.scale_factor),
        "latent": {"z_channels": ae.z_channels, "feature_channels": ae.feature_channels,
                   "ae_downsample": ae.downsample, "cond_scale": cfg.cond_scale,
                   "unet_multiple": model.unet.size_multiple, "conditional": cfg.unet.conditional,
                   "generation_latent": [n, n],
                   # the latent the model was trained on (default tiles are a few times it) and
                   # the multiple every tile start and size keeps (U-Net levels, whole LR pixels)
                   "train_latent": n, "tile_align": cfg.tile_align},
        "schedule": {"name": d.schedule, "timesteps": d.timesteps, "linear_start": d.linear_start,
                     "linear_end": d.linear_end, "cosine_s": d.cosine_s,
                     "alpha_bar": [float(v) for v in diffusion.alpha_bar_for(d)]},
        "liif": {"query_chunk": cfg.liif.query_chunk},
        "precision": precision,
        "graphs": graph_entries,
        "producer": _producer(opset),
        "tensorrt": tensorrt,
    }


def _clear_previous(out_dir: Path) -> None:
    """Drop an earlier export's manifest first (a crash midway must not leave a manifest
    that lists a mix of old and new files) and its graphs/engines that this export will
    not rewrite (e.g. encoder.onnx when a generation model replaces an SR model)."""
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    (out_dir / PRECISION_GATE_NAME).unlink(missing_ok=True)     # judged the old graphs
    for name in GRAPH_NAMES:
        for suffix in (".onnx", ".engine"):
            (out_dir / f"{name}{suffix}").unlink(missing_ok=True)


def export_model(model: LDMind, out_dir: str | Path, precision: str = "fp32", opset: int = DEFAULT_OPSET,
                 tensorrt: bool = False, check: bool = True, source: str = "python API",
                 log: Callable[[str], None] = print, calibration=None) -> dict[str, Any]:
    """Export every graph of ``model`` into ``out_dir``; returns the manifest.  ``precision``
    "int8" needs ``calibration`` (an ``export.calibration.CalibrationPlan``): the fp32 graphs
    are exported, self-checked and measured as usual, then quantized (``export.quantize``)."""
    if (precision == "int8") != (calibration is not None):
        raise ValueError("precision 'int8' goes with a calibration plan, and only it")
    if precision == "int8" and tensorrt:
        raise ValueError("TensorRT engines are built from fp16 graphs, not int8 ones")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir)
    traced = "fp32" if precision == "int8" else precision
    net = graphs.model_for(model, traced)
    ref32 = graphs.model_for(model, "fp32")
    specs = specs_for(net)
    files, entries = {}, {}
    for name, spec in specs.items():
        t0 = time.perf_counter()
        dims = example_dims(net, name)
        example = {k: torch.from_numpy(v) for k, v in feeds.random_feed(spec, net.cfg, dims).items()}
        files[name] = f"{name}.onnx"
        export_graph(graphs.wrap(net, name), spec, example, out_dir / files[name], opset)
        entries[name] = mf.graph_to_json(spec, files[name], mf.sha256_file(out_dir / files[name]), traced)
        entries[name]["example"] = {k: v for k, v in dims.items() if any(k in t.shape for t in spec.inputs)}
        size = (out_dir / files[name]).stat().st_size
        log(f"  {files[name]:<15} {size / 2**20:9.1f} MiB  {traced}  {time.perf_counter() - t0:6.1f} s")
    if check:
        errors = self_check(ref32, traced, out_dir, specs, files)
        log("  self-check (ONNX Runtime vs PyTorch fp32, sizes not traced at): "
            + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    t0 = time.perf_counter()
    memory = memory_costs(net, out_dir, specs, files)
    log(f"  working memory measured on the graphs ({time.perf_counter() - t0:.1f} s): "
        + ", ".join(f"{k} {max(a for a, _ in v) / 1024:.1f} KiB/cell" for k, v in memory.items()))
    engines = None
    if tensorrt:
        ok, why = trt_engines.available()
        if not ok:
            log(f"TensorRT engines skipped: {why}. The ONNX graphs are complete without them.")
        else:
            engines = trt_engines.build_engines(out_dir, specs, files, precision, log)
    # through JSON once, so that the returned manifest is what a reader of the file gets
    manifest = json.loads(json.dumps(build_manifest(model, traced, opset, entries, engines, source, memory)))
    if precision == "int8":
        mf.validate(manifest, out_dir)   # the fp32 export, which calibration runs
        # cost.memory stays that of the fp32 graphs: a bound for the int8 ones
        manifest = quantize.quantize_export(out_dir, manifest, calibration, log)
    mf.validate(manifest, out_dir)  # what the runtime will check, checked before writing
    mf.write_manifest(out_dir, manifest)
    return manifest
