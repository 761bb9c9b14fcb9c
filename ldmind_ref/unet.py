"""The denoiser eps_theta(z_t, t[, cond]): the guided-diffusion U-Net used by latent diffusion.

Timestep embedding -> MLP; per level ``num_res_blocks`` ResBlocks (+ multi-head
self-attention at the configured downsample factors) and a stride-2 conv; a middle of
Res, attention, Res; the mirrored decoder side with skip concatenation and nearest
upsampling; GN-SiLU-conv out.  SR models take [z_t, cond] concatenated on channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import UNetConfig
from .layers import Downsample, ResBlock, SpatialAttention, Upsample, norm


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps: [B] -> [B, dim] ([cos | sin])."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class EmbedSequential(nn.Sequential):
    """A sequence whose ResBlocks also receive the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int):
        super().__init__()
        mc, g, hc = cfg.model_channels, cfg.num_groups, cfg.num_head_channels
        emb = 4 * mc
        self.model_channels = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, g, emb_channels=emb, zero_out=True)

        def attn(c: int) -> SpatialAttention:
            return SpatialAttention(c, g, head_channels=hc, zero_out=True)

        self.conv_in = nn.Conv2d(in_channels, mc, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch, ds = [mc], mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mc * mult)]
                ch = mc * mult
                if ds in cfg.attention_resolutions:
                    layers.append(attn(ch))
                self.down.append(EmbedSequential(*layers))
                skips.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.down.append(EmbedSequential(Downsample(ch, asymmetric_pad=False)))
                skips.append(ch)
                ds *= 2
        self.mid = EmbedSequential(res(ch, ch), attn(ch), res(ch, ch))
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skips.pop(), mc * mult)]
                ch = mc * mult
                if ds in cfg.attention_resolutions:
                    layers.append(attn(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.up.append(EmbedSequential(*layers))
        self.norm_out = norm(ch, g)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.size_multiple = 2 ** (len(cfg.channel_mult) - 1)  # latent sides must divide by this

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x [B, in, h, w] (h, w multiples of ``size_multiple``), t [B] -> eps [B, out, h, w]."""
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(x.dtype))
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            h = block(h, emb)
            hs.append(h)
        h = self.mid(h, emb)
        for block in self.up:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))
