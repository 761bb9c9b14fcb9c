"""Eager PyTorch timings of the reference's stages, for side-by-side benchmarks (a library
for ``python -m runtime.programs.bench --side-by-side``; never a test).

Each stage is called as the reference sampler calls it (``sampler.py``): ``encode_lr`` on an
LR image, one ``unet_step`` on a latent, ``decode`` on a latent, and the LIIF queries of an
H x W output in the model's query chunks (``liif.query``).  Timing: one warm-up call, then
the median of ``repeat`` calls, ``torch.no_grad``; ``bf16`` runs each under
``torch.autocast(device, torch.bfloat16)`` on the model's device (on a CPU the precision a
user of plain PyTorch would pick with bf16 instructions).  On CUDA every timed call ends
with a device synchronisation, and ``graph=True`` replays the U-Net step from a CUDA graph
captured once (static inputs; the step is the same computation at every timestep).

``request_times`` composes one SR request as the paper's Table 5 counts it: encoder, ``steps``
U-Net steps, decoder and the queries of the output at each scale.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from . import liif
from .benchmark import median_seconds as _median
from .core import coords
from .model import LDMind


def stage_times(model: LDMind, lr_side: int, out_side: int | list[int], repeat: int = 3, bf16: bool = False,
                graph: bool = False) -> dict:
    """Seconds per call: encoder (LR lr_side^2), U-Net step and decoder (the latent of that
    LR), LIIF queries for an out_side^2 output (a list of sides: ``liif`` is then a list)."""
    sides = out_side if isinstance(out_side, list) else [out_side]
    calls = stage_calls(model, lr_side, sides, bf16, graph)
    out = {s: _median(fn, repeat) for s, fn in calls.items() if not s.startswith("liif")}
    liif_times = [_median(calls[f"liif{k}"], repeat) for k in range(len(sides))]
    out["liif"] = liif_times if isinstance(out_side, list) else liif_times[0]
    return out


def stage_calls(model: LDMind, lr_side: int, out_sides: list[int], bf16: bool = False, graph: bool = False) -> dict:
    """{stage: a call of it}, called as ``stage_times`` times them: ``encoder``, ``unet_step``,
    ``decoder``, and ``liif0``, ``liif1``... for each side of ``out_sides``.  Each call runs
    under ``torch.no_grad`` (and bf16 autocast when asked), synchronised on CUDA."""
    cfg = model.cfg
    model.eval()
    dev = next(model.parameters()).device
    cuda = dev.type == "cuda"
    ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16, cache_enabled=not graph)) if bf16 \
        else contextlib.nullcontext
    g = torch.Generator().manual_seed(0)
    h, w = cfg.latent_size_for_lr(lr_side, lr_side)
    c = cfg.autoencoder.z_channels
    lr = (torch.rand(1, 3, lr_side, lr_side, generator=g) * 2 - 1).to(dev)
    z = torch.randn(1, c, h, w, generator=g).to(dev)
    cond = torch.randn(1, c, h, w, generator=g).to(dev) if cfg.unet.conditional else None
    t = torch.tensor([500], device=dev)
    coef = lambda v: torch.tensor([v], device=dev)   # noqa: E731

    def run(fn):
        def call():
            with torch.no_grad(), ctx():
                fn()
            if cuda:
                torch.cuda.synchronize(dev)
        return call

    out = {}
    if cfg.unet.conditional:
        out["encoder"] = run(lambda: model.encode_lr(lr))
    a_t, a_prev, sigma = coef(0.5), coef(0.6), coef(0.1)   # made before any capture: no host copies inside it
    step = lambda: model.unet_step(z, cond, t, a_t, a_prev, sigma, z)  # noqa: E731
    if graph:
        if not cuda:
            raise ValueError("CUDA graphs need a CUDA device")
        def step_in_ctx():   # captured: no synchronisation inside
            with ctx():
                step()
        with torch.no_grad():
            replay = cuda_graph(step_in_ctx)
        out["unet_step"] = run(replay)
    else:
        out["unet_step"] = run(step)
    out["decoder"] = run(lambda: model.decode(z))
    with torch.no_grad(), ctx():
        features = model.decode(z)
    chunk = cfg.liif.query_chunk

    def queries_for(H: int, W: int):
        co_all = torch.from_numpy(coords.grid_coords(H, W)).to(dev)
        pieces = [(a, min(a + chunk, H * W)) for a in range(0, H * W, chunk)]
        ce = [torch.from_numpy(np.ascontiguousarray(coords.cells(H, W, b - a)))[None].to(dev) for a, b in pieces]

        def queries():
            for (a, b), cell in zip(pieces, ce):
                liif.query(model.liif, features, co_all[a:b][None], cell)
        return queries
    for k, side in enumerate(out_sides):
        out[f"liif{k}"] = run(queries_for(side, side))
    return out


def cuda_graph(fn):
    """Capture ``fn`` (fixed inputs) in a CUDA graph after warm-up on a side stream; returns
    its replay."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def request_times(model: LDMind, lr_side: int, scales: list[float], steps: int, repeat: int = 3,
                  bf16: bool = False, graph: bool = False) -> list[dict]:
    """One row per scale: the stage times and the composed request (encoder + steps x U-Net
    step + decoder + queries at round(scale * lr_side)^2), seconds and frames per second."""
    sides = [round(s * lr_side) for s in scales]
    st = stage_times(model, lr_side, sides, repeat, bf16, graph)
    rows = []
    for s, side, q in zip(scales, sides, st["liif"]):
        total = st.get("encoder", 0.0) + steps * st["unet_step"] + st["decoder"] + q
        rows.append({"scale": s, "lr": lr_side, "out": side, "steps": steps,
                     "encoder_s": st.get("encoder"), "unet_step_s": st["unet_step"], "decoder_s": st["decoder"],
                     "liif_s": q, "total_s": total, "fps": 1.0 / total})
    return rows
