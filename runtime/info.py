"""What an engine directory holds and how this machine would run it: ``python -m runtime info``
and the service's ``/v1/info`` (``summary``), and the text ``info`` prints (``lines``)."""
from __future__ import annotations

from ldmind_ref.core import latent_tiles
from ldmind_ref.core.contract import GRAPH_MEMORY_BUDGET

from . import engine, limits
from .backends import choice
from .bundle import Bundle
from .console import one_line


def summary(b: Bundle, verified: bool) -> dict:
    """The loaded bundle ``b`` as a JSON-able dict; ``verified``: whether its checksums were
    checked (``load_bundle(verify=True)`` and ``backends.onnxruntime.verify_graphs``)."""
    m = b.manifest
    # the tiles a large input gets here: the default, shrunk to the working-memory budget
    big = latent_tiles.choose(1 << 14, 1 << 14, b.tile_align, b.train_latent, b.costs, 50,
                              fits=limits.fits_budget(b.costs, 1))
    tile = (big.th, big.overlap)
    backends = {name: engine.unavailable_reason(name, b) or "available" for name in engine.BACKENDS}
    _, passed_over = choice.allowed(b)
    for name, why in passed_over.items():
        if backends[name] == "available":
            backends[name] = f"available; auto passes it over: {why}"
    auto = next((n for n in engine.GPU_ORDER if backends[n] == "available"), None) or choice.preview(b)
    return {
        "directory": str(b.root), "model": b.name, "source": m["model"].get("source"),
        "kind": "super-resolution" if b.conditional else "generation", "precision": b.precision,
        "format_version": m["format_version"], "scale_factor": m.get("scale_factor"),
        "latent": {**m["latent"], "default_tile": list(tile),
                   "default_tile_working_bytes": limits.graph_bytes(b.costs, 1, tile[0], tile[0])},
        "schedule": {k: v for k, v in m["schedule"].items() if k != "alpha_bar"},
        "alpha_bar": [float(b.alpha_bar[0]), float(b.alpha_bar[-1])], "query_chunk": b.query_chunk,
        "graphs": {k: {"file": g["file"], "bytes": (b.root / g["file"]).stat().st_size,
                       "sha256": g["sha256"], "precision": g.get("precision")} for k, g in b.graphs.items()},
        "producer": m.get("producer"),
        "tensorrt": None if not b.tensorrt else {k: b.tensorrt.get(k) for k in ("version", "gpu", "compute_capability")},
        "checksums": "verified" if verified else "not checked", "backends": backends, "auto": auto,
    }


def lines(s: dict) -> str:
    """``summary`` as ``info`` prints it (names through ``one_line``: one line each)."""
    lat, sch = s["latent"], s["schedule"]
    return "\n".join([
        f"{one_line(s['directory'])}: {one_line(str(s['model']))} ({s['kind']}), {s['precision']}, "
        f"manifest format {s['format_version']}",
        f"  weights:   {one_line(str(s['source']))}",
        f"  latent:    {lat['z_channels']} channels, auto-encoder /{lat['ae_downsample']}, cond_scale "
        f"{lat['cond_scale']}, U-Net multiple {lat['unet_multiple']}, generation latent "
        f"{lat['generation_latent'][0]}x{lat['generation_latent'][1]}, scale factor {s['scale_factor']:.4g}",
        f"  schedule:  {sch['name']}, T = {sch['timesteps']}, alpha_bar {s['alpha_bar'][0]:.6g} .. {s['alpha_bar'][1]:.6g}",
        f"  tiles:     latent tiles of {lat['default_tile'][0]} cells, overlap {lat['default_tile'][1]} "
        f"(trained on {lat['train_latent']}x{lat['train_latent']}; starts multiples of {lat['tile_align']}), "
        f"about {lat['default_tile_working_bytes'] / 2 ** 20:.0f} MiB per graph call (budget "
        f"{GRAPH_MEMORY_BUDGET / 2 ** 30:g} GiB); one piece when that fits and is cheaper",
        f"  queries:   {s['query_chunk']} per LIIF call",
        "  graphs:    " + ", ".join(f"{one_line(g['file'])} {g['bytes'] / 2 ** 20:.1f} MiB" for g in s["graphs"].values())
        + f" (checksums {s['checksums']})",
        "  producer:  " + ", ".join(f"{k} {v}" for k, v in (s["producer"] or {}).items()),
        "  tensorrt:  " + ("none" if not s["tensorrt"] else
                            f"TensorRT {s['tensorrt']['version']} for {s['tensorrt']['gpu']} "
                            f"(sm {s['tensorrt']['compute_capability']})"),
        "  backends:",
        *[f"    {k:<13} {v}" for k, v in s["backends"].items()],
        f"  auto picks: {s['auto']}",
    ])
