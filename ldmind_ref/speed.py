"""Eager PyTorch timings of the reference's stages, for side-by-side benchmarks (a library
for ``python -m runtime.bench --side-by-side``; never a test).

Each stage is called as the reference sampler calls it (``sampler.py``): ``encode_lr`` on an
LR image, one ``unet_step`` on a latent, ``decode`` on a latent, and the LIIF queries of an
H x W output in the model's query chunks (``liif.query``).  Timing: one warm-up call, then
the median of ``repeat`` calls, ``torch.no_grad``; ``bf16`` runs each under
``torch.autocast("cpu", torch.bfloat16)`` (the precision a user of plain PyTorch would pick
on a CPU with bf16 instructions).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from . import coords, liif
from .benchmark import median_seconds as _median
from .model import LDMind


@torch.no_grad()
def stage_times(model: LDMind, lr_side: int, out_side: int, repeat: int = 3, bf16: bool = False) -> dict:
    """Seconds per call: encoder (LR lr_side^2), U-Net step and decoder (the latent of that
    LR), LIIF queries for an out_side^2 output."""
    cfg = model.cfg
    model.eval()
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    g = torch.Generator().manual_seed(0)
    h, w = cfg.latent_size_for_lr(lr_side, lr_side)
    c = cfg.autoencoder.z_channels
    lr = torch.rand(1, 3, lr_side, lr_side, generator=g) * 2 - 1
    z = torch.randn(1, c, h, w, generator=g)
    cond = torch.randn(1, c, h, w, generator=g) if cfg.unet.conditional else None
    t = torch.tensor([500])
    coef = lambda v: torch.tensor([v])   # noqa: E731

    def run(fn):
        def call():
            with ctx():
                fn()
        return call

    out = {}
    if cfg.unet.conditional:
        out["encoder"] = _median(run(lambda: model.encode_lr(lr)), repeat)
    out["unet_step"] = _median(run(lambda: model.unet_step(z, cond, t, coef(0.5), coef(0.6), coef(0.1), z)), repeat)
    out["decoder"] = _median(run(lambda: model.decode(z)), repeat)
    features = model.decode(z)
    chunk = cfg.liif.query_chunk
    H = W = out_side
    co_all = torch.from_numpy(coords.grid_coords(H, W))
    pieces = [(a, min(a + chunk, H * W)) for a in range(0, H * W, chunk)]
    ce = [torch.from_numpy(np.ascontiguousarray(coords.cells(H, W, b - a)))[None] for a, b in pieces]

    def queries():
        for (a, b), cell in zip(pieces, ce):
            liif.query(model.liif, features, co_all[a:b][None], cell)
    out["liif"] = _median(run(queries), repeat)
    return out
