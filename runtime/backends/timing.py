"""Each graph of an export called as the pipeline calls it, at one representative size, and a
fair timer for several backends side by side: what ``auto`` measures once per machine and
export (runtime/backends/choice.py) and what the backend benchmarks print.

The calls: one U-Net step and the decoder on a ``latent_side``^2 latent, the encoder on the LR
of that latent, the LIIF queries of an ``out_side``^2 output in the bands of ``tiling.render_into`` with the
features bound once.  Inputs are random but in the graphs' real ranges (the speed of a
dense network does not depend on the values).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .. import tiling
from ..bundle import Bundle
from .base import Engine, graphs_of


def liif_tile(bundle: Bundle, engines: dict[str, Engine]) -> int:
    """LIIF queries per call: the manifest's ``query_chunk``, or less where the LIIF engine's
    backend prefers fewer (the chunking never changes the image)."""
    preferred = getattr(engines.get("liif"), "query_tile", None)
    return min(bundle.query_chunk, preferred or bundle.query_chunk)


def graph_calls(bundle: Bundle, engines: dict[str, Engine], latent_side: int, out_side: int,
                tile: int | None = None) -> dict[str, Callable[[], object]]:
    """{graph: a call of that graph} for the graphs of ``engines`` (any subset of the bundle's)."""
    b, e = bundle, engines
    h = w = latent_side
    lr_side = max(1, latent_side * b.ae_downsample // max(1, b.cond_scale))
    rs = np.random.RandomState(0)
    z = rs.randn(1, b.z_channels, h, w).astype(np.float32)
    out: dict[str, Callable[[], object]] = {}
    if b.conditional and "encoder" in e:
        lr = (rs.rand(1, 3, lr_side, lr_side) * 2 - 1).astype(np.float32)
        out["encoder"] = lambda: e["encoder"]({"lr": lr})
    if "unet_step" in e:
        feed = {"z_t": z, "timestep": np.array([500], np.int64), "alpha_bar_t": np.array([0.5], np.float32),
                "alpha_bar_prev": np.array([0.6], np.float32), "sigma_t": np.array([0.1], np.float32), "noise": z}
        if b.conditional:
            feed["cond"] = z
        out["unet_step"] = lambda: e["unet_step"](feed)
    if "decoder" in e:
        out["decoder"] = lambda: e["decoder"]({"z": z})
    if "liif" in e:
        f = rs.randn(1, b.feature_channels, h, w).astype(np.float32)
        img = np.empty((1, out_side, out_side, 3), np.uint8)
        q = tile or liif_tile(b, e)

        def render():
            run = e["liif"].bind({"features": f})
            tiling.render_into(img, lambda _w, co, ce: run({"coord": co, "cell": ce})["rgb"], h, h, q)
        out["liif"] = render
    return {g: out[g] for g in graphs_of(b) if g in out}


def alternating(calls: dict[str, dict[str, Callable]], repeat: int) -> dict[str, dict[str, float]]:
    """{backend: {what: fn}} -> {backend: {what: median seconds}}: a warm-up call each, then
    ``repeat`` rounds, each calling every backend's ``what`` in turn, so that a shared
    machine's load falls on all alike."""
    times = {b: {w: [] for w in c} for b, c in calls.items()}
    for c in calls.values():
        for fn in c.values():
            fn()
    whats = list(dict.fromkeys(w for c in calls.values() for w in c))
    for _ in range(repeat):
        for w in whats:
            for b, c in calls.items():
                if w in c:
                    t = time.perf_counter()
                    c[w]()
                    times[b][w].append(time.perf_counter() - t)
    return {b: {w: float(np.median(v)) for w, v in t.items()} for b, t in times.items()}
