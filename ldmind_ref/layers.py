"""Building blocks shared by the auto-encoder and the U-Net: GroupNorm, ResBlocks, attention.

Normalisation statistics and the attention softmax are computed in fp32 whatever the
weights' dtype (fp16 overflows there); everything else runs in the input's dtype.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in fp32, returned in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


def norm(channels: int, groups: int) -> GroupNorm32:
    return GroupNorm32(groups, channels, eps=1e-6)


# Query rows per attention block in eager mode; bounds the score matrix to
# ATTN_CHUNK x T floats per head (a 256 x 256 latent has T = 65,536 tokens: a full T x T
# matrix would need 16 GiB per head).
ATTN_CHUNK = 2048


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, graph_blocks: int = 1) -> torch.Tensor:
    """Scaled dot-product attention over tokens: q, k, v [N, T, d] -> [N, T, d], in fp32.

    Softmax rows are independent, so the queries can be processed in blocks: eager mode
    uses blocks of ATTN_CHUNK rows; a traced graph (ONNX export) uses ``graph_blocks``
    blocks of ceil(T / graph_blocks) rows with bounds computed from the traced T, so the
    graph stays dynamic and ONNX Runtime holds one block's scores at a time."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    q, kt, vf = q.float() * scale, k.float().transpose(1, 2), v.float()
    T = q.shape[1]

    def block(a, b):
        return torch.bmm(torch.softmax(torch.bmm(q[:, a:b], kt), dim=-1), vf)   # [N, b - a, d]

    if torch.jit.is_tracing():
        if graph_blocks == 1:
            out = block(0, T)
        else:
            rows = (T + graph_blocks - 1) // graph_blocks  # traced: follows the input's T
            out = torch.cat([block(i * rows, (i + 1) * rows) for i in range(graph_blocks)], dim=1)
    elif T <= ATTN_CHUNK:
        out = block(0, T)
    else:
        out = torch.cat([block(i, i + ATTN_CHUNK) for i in range(0, T, ATTN_CHUNK)], dim=1)
    return out.to(v.dtype)


class ResBlock(nn.Module):
    """GN-SiLU-conv, (+ timestep embedding), GN-SiLU-conv, with a 1x1 skip when widths differ."""

    def __init__(self, cin: int, cout: int, groups: int, emb_channels: int = 0, zero_out: bool = False):
        super().__init__()
        self.norm1 = norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_channels, cout) if emb_channels else None
        self.norm2 = norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if zero_out:  # U-Net convention: every residual branch starts as the identity
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None:
            h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SpatialAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, residual.

    ``head_channels`` 0 means one head (the auto-encoder's AttnBlock)."""

    def __init__(self, channels: int, groups: int, head_channels: int = 0, zero_out: bool = False,
                 graph_blocks: int = 1):
        super().__init__()
        self.heads = channels // head_channels if head_channels else 1
        self.graph_blocks = graph_blocks  # query blocks in exported graphs (see attention())
        self.norm = norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        if zero_out:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        # -> three [B*heads, T, d] token matrices
        q, k, v = (qkv[:, i].reshape(B * self.heads, C // self.heads, H * W).transpose(1, 2) for i in range(3))
        out = attention(q, k, v, self.graph_blocks).transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj(out)


class Downsample(nn.Module):
    """3x3 conv with stride 2; pads right/bottom by one like the official auto-encoder."""

    def __init__(self, channels: int, asymmetric_pad: bool):
        super().__init__()
        self.asymmetric_pad = asymmetric_pad
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0 if asymmetric_pad else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.asymmetric_pad:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest 2x then a 3x3 conv (U-Net decoder side)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
