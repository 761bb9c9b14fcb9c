"""What each exported computation costs per latent cell: measured on the model, not re-derived.

The exporter writes this into the manifest (``graphs[name]["cost"]``) and the runtime plans
tiles and checks memory from it, so neither has to know the architecture.  It is measured
by running each computation once on a small probe latent with forward hooks:

    macs_per_cell   multiply-adds of the convolutions and linear layers per latent cell
                    (they grow with the area)
    attention       one entry per self-attention layer: stride (latent cells per token
                    along each side), channels, heads, and the query blocks the exported
                    graph splits it into (one block's scores are alive at a time)

``latent_tiles.graph_cost`` turns this into multiply-adds for any tile size.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import SpatialAttention
from .model import LDMind


def _probe(model: LDMind, fn, cells: int) -> dict:
    macs, attn = [0.0], []

    def conv_hook(m, inp, out):
        per_out = m.weight.numel() / m.weight.shape[0] if isinstance(m, nn.Conv2d) else m.in_features
        macs[0] += out.numel() / out.shape[0] * per_out

    def attn_hook(m, inp, out):
        attn.append({"side": inp[0].shape[-1], "channels": inp[0].shape[1], "heads": m.heads,
                     "blocks": m.graph_blocks})

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks += [m.register_forward_hook(attn_hook) for m in model.modules() if isinstance(m, SpatialAttention)]
    try:
        with torch.no_grad():
            fn()
    finally:
        for h in hooks:
            h.remove()
    return {"macs_per_cell": macs[0] / cells, "attention": attn}


def graph_costs(model: LDMind) -> dict[str, dict]:
    """{graph: {"macs_per_cell", "attention": [{stride, channels, heads, blocks}]}} for the
    encoder (SR models), unet_step and decoder; batch 1, fp32 probe on the CPU."""
    cfg = model.cfg
    r = cfg.latent_per_lr_pixel
    side = 4 * math.lcm(model.unet.size_multiple, r)          # every level divides it
    c = cfg.autoencoder.z_channels
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    z = torch.zeros(1, c, side, side, device=dev, dtype=dtype)
    t = torch.ones(1, dtype=torch.int64, device=dev)
    runs = {"unet_step": lambda: model.eps(z, z if cfg.unet.conditional else None, t),
            "decoder": lambda: model.decode(z)}
    if cfg.unet.conditional:
        lr = torch.zeros(1, 3, side // r, side // r, device=dev, dtype=dtype)
        runs = {"encoder": lambda: model.encode_lr(lr), **runs}
    out = {}
    for name, fn in runs.items():
        p = _probe(model, fn, side * side)
        for a in p["attention"]:
            a["stride"] = side / a.pop("side")
        out[name] = p
    return out
