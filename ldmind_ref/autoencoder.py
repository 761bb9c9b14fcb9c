"""Auto-encoder: encoder E_phi (image -> latent z) and decoder D_phi (z -> features).

D_phi is the official decoder *without upsampling and without norm_out/conv_out*: it
returns a feature map at latent resolution that the LIIF head (``liif.py``) turns into
pixels at any size.  Images are float in [-1, 1], NCHW.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import AE_GRAPH_ATTENTION_BLOCKS, AutoencoderConfig
from .layers import Downsample, ResBlock, SpatialAttention, norm


def _attn(channels: int, groups: int) -> SpatialAttention:
    return SpatialAttention(channels, groups, graph_blocks=AE_GRAPH_ATTENTION_BLOCKS)


class Encoder(nn.Module):
    """E_phi: conv_in, per level ResBlocks (+attention) and a stride-2 conv, middle
    (Res, attention, Res), GN-SiLU-conv_out, then the 1x1 ``quant_conv``.
    Returns [B, c, h, w] (or [B, 2c, h, w] = mean and log-variance when KL)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        g, ch = cfg.num_groups, cfg.ch
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        blocks: list[nn.Module] = []
        res, cin = cfg.resolution, ch
        for level, mult in enumerate(cfg.ch_mult):
            cout = ch * mult
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout, g))
                cin = cout
                if res in cfg.attn_resolutions:
                    blocks.append(_attn(cin, g))
            if level != len(cfg.ch_mult) - 1:
                blocks.append(Downsample(cin, asymmetric_pad=True))
                res //= 2
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(ResBlock(cin, cin, g), _attn(cin, g), ResBlock(cin, cin, g))
        self.norm_out = norm(cin, g)
        zc = 2 * cfg.z_channels if cfg.kl else cfg.z_channels
        self.conv_out = nn.Conv2d(cin, zc, 3, padding=1)
        self.quant_conv = nn.Conv2d(zc, zc, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.quant_conv(self.conv_out(F.silu(self.norm_out(h))))


class Decoder(nn.Module):
    """D_phi: 1x1 ``post_quant_conv``, conv_in to the widest level, middle (Res, attention,
    Res), then num_res_blocks + 1 ResBlocks per level from widest to narrowest (the last at
    ``feature_channels``), no upsampling: [B, c, h, w] -> [B, feature_channels, h, w]."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        g = cfg.num_groups
        cin = cfg.ch * cfg.ch_mult[-1]
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = nn.Sequential(ResBlock(cin, cin, g), _attn(cin, g), ResBlock(cin, cin, g))
        blocks: list[nn.Module] = []
        for level in reversed(range(len(cfg.ch_mult))):
            cout = cfg.feature_channels if level == 0 else cfg.ch * cfg.ch_mult[level]
            res = cfg.resolution // 2 ** level  # the level's resolution label, as in the official code
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(cin, cout, g))
                cin = cout
                if res in cfg.attn_resolutions:
                    blocks.append(_attn(cin, g))
        self.up = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.mid(self.conv_in(self.post_quant_conv(z))))


def split_posterior(moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL encoder output [B, 2c, h, w] -> (mean, logvar clamped to [-30, 20])."""
    mean, logvar = moments.chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, 1)) summed over latent elements, averaged over the batch."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean()
