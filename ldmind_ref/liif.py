"""Implicit neural decoder head f_theta (LIIF) and its stateless query.

    features = decoder(z)                      # D_phi: [B, C, h, w], latent resolution
    rgb      = query(head, features, coord, cell)

Coordinates (see ``coords.py``): pixel centres in [-1, 1], (y, x) order.  ``coord`` is
[B, Q, 2]; ``cell`` is [B, Q, 2] holding the output pixel size (2/H_out, 2/W_out).

For each query the four latent cells around it (nearest cell after shifting the query by
+-half a latent cell on each axis) each predict RGB from
[their feature, relative coordinate * (h, w), cell * (h, w)], and the predictions are
blended by bilinear-like weights.  Mixed precision: the coordinate math and the ensemble
weights always run in the dtype of ``coord`` (fp32), only the MLP runs in the head's dtype.

Border behaviour (where this differs from the original LIIF code).  Near the image border a
shifted neighbour falls outside the latent and is clamped onto the last cell, so on that
axis both neighbours are the same cell.  LIIF's area weights |rel_y * rel_x| then carry a
common factor |rel| of that axis, which cancels in the normalisation -- except where it is
exactly 0: a query exactly at the centre of the last latent row or column (at 1x, at some
integer scales).  There every area is 0, only EPS_AREA is left, and the original code
returns a flat average of the four predictions instead of the bilinear blend it returns an
ulp away; whether a query is "exactly" there depends on float rounding of its coordinate.
Here an axis whose two neighbours are the same cell contributes the factor 1 instead of
|rel| (the limit of the original as the query approaches the centre): the blend is bilinear
on the other axis with the clamped neighbour, continuous in the coordinate, and so
independent of its rounding.  Everywhere else the weights are the original LIIF weights.
"""
from __future__ import annotations

import torch
from torch import nn

from .core.coords import cells as _cells, grid_coords

# Shift that breaks ties when a query lies exactly on a latent cell border, and the clamp
# that keeps shifted queries inside the image.  Both are below fp16 resolution near 1,
# which is why this math stays fp32.
EPS_SHIFT = 1e-6
# Added to every ensemble area so that the normalisation never divides 0 by 0 (a query on
# the corner of the image has all four shifted neighbours collapse onto one cell).
EPS_AREA = 1e-9


class LIIFHead(nn.Module):
    """f_theta: ReLU MLP [C + 2 (rel. coord) + 2 (rel. cell)] -> hidden... -> 3."""

    def __init__(self, feature_channels: int, hidden: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        last = feature_channels + 4
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        layers.append(nn.Linear(last, 3))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


# The four neighbours in the order (-y,-x), (-y,+x), (+y,-x), (+y,+x): the opposite corner
# of neighbour k is neighbour 3 - k.
_OFFSETS = ((-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0))


_OFFSETS_ON_DEVICE: dict = {}


def _offsets(coord: torch.Tensor) -> torch.Tensor:
    """The ensemble offsets as a tensor beside ``coord``: made once per accelerator and dtype
    (a fresh one would be copied from host memory at every call, waiting for the device)."""
    if coord.device.type == "cpu" or torch.jit.is_tracing():
        return torch.tensor(_OFFSETS, dtype=coord.dtype, device=coord.device)
    key = (coord.device, coord.dtype)
    if key not in _OFFSETS_ON_DEVICE:
        _OFFSETS_ON_DEVICE[key] = torch.tensor(_OFFSETS, dtype=coord.dtype, device=coord.device)
    return _OFFSETS_ON_DEVICE[key]


def neighbours(coord: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The local ensemble of each query: coord [B, Q, 2], size = (h, w) float tensor ->
    (idx [4, B, Q, 2] latent cell (row, col) as floats, rel [4, B, Q, 2] query minus cell
    centre scaled by (h, w) as LIIF does, so one latent cell spans 2 units, weights [4, B, Q] summing to 1)."""
    offsets = _offsets(coord)                                                     # [4, 2]
    # half a latent cell is 1/h in [-1, 1] units
    shifted = coord.unsqueeze(0) + offsets.view(4, 1, 1, 2) / size + EPS_SHIFT  # [4, B, Q, 2]
    shifted = shifted.clamp(-1 + EPS_SHIFT, 1 - EPS_SHIFT)
    # nearest latent cell of each shifted query
    idx = torch.floor((shifted + 1) * size / 2)
    idx = torch.minimum(torch.maximum(idx, torch.zeros_like(size)), size - 1)  # [4, B, Q, 2]
    centre = -1 + (2 * idx + 1) / size
    rel = (coord.unsqueeze(0) - centre) * size                                  # [4, B, Q, 2]
    # an axis whose -shift and +shift neighbours are one (clamped) cell: factor 1, not |rel|
    # (see the module doc: the original's flat average at exact ties, decided by rounding)
    collapsed = idx[0] == idx[3]                                                # [B, Q, 2]
    side = torch.where(collapsed.unsqueeze(0), torch.ones_like(rel), rel.abs())  # [4, B, Q, 2]
    area = side[..., 0] * side[..., 1] + EPS_AREA                               # [4, B, Q]
    # Diagonal swap: a neighbour's weight is the area of the rectangle between the query and
    # the *opposite* neighbour, so the closest cell gets the largest weight (bilinear-like).
    weights = area.flip(0) / area.sum(0, keepdim=True)
    return idx, rel, weights


def query(head: LIIFHead, features: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """RGB at the query points: features [B, C, h, w], coord/cell [B, Q, 2] -> [B, Q, 3] (dtype of coord)."""
    B, C = features.shape[0], features.shape[1]
    # (h, w) as a tensor so that exported graphs keep the latent size dynamic
    size = torch._shape_as_tensor(features)[2:].to(coord.dtype)           # [2] = (h, w)
    if size.device != coord.device:
        # the shape tensor lives on the CPU (a traced export never gets here); on an accelerator
        # fill it there instead of copying it: a copy from pageable memory waits for the device
        size = torch.stack([coord.new_full((), features.shape[2]), coord.new_full((), features.shape[3])])
    idx, rel, weights = neighbours(coord, size)

    # gather the features: flatten (b, y, x) into one row index of a [B*h*w, C] table
    table = features.permute(0, 2, 3, 1).reshape(-1, C)                        # [B*h*w, C]
    idx_l = idx.to(torch.int64)
    batch = torch.arange(B, device=coord.device).view(1, B, 1)
    row = (batch * features.shape[2] + idx_l[..., 0]) * features.shape[3] + idx_l[..., 1]  # [4, B, Q]
    q_feat = table.index_select(0, row.reshape(-1)).view(4, B, -1, C)           # [4, B, Q, C]

    rel_cell = (cell * size).unsqueeze(0).expand(4, -1, -1, -1)                 # [4, B, Q, 2]
    inp = torch.cat([q_feat.to(coord.dtype), rel, rel_cell], dim=-1)           # [4, B, Q, C + 4]
    mlp_dtype = head.layers[0].weight.dtype
    pred = head(inp.to(mlp_dtype)).to(coord.dtype)                             # [4, B, Q, 3]
    return (pred * weights.unsqueeze(-1)).sum(0)                               # [B, Q, 3]


def render(head: LIIFHead, features: torch.Tensor, H: int, W: int, chunk: int = 65536) -> torch.Tensor:
    """Render an H x W image from features: [B, C, h, w] -> [B, 3, H, W], querying at most
    ``chunk`` pixels per MLP call (each query is independent, so chunking changes nothing)."""
    B = features.shape[0]
    coord_all = torch.from_numpy(grid_coords(H, W)).to(features.device)         # [H*W, 2]
    cell_all = torch.from_numpy(_cells(H, W, 1)).to(features.device)            # [1, 2]
    out = torch.empty(B, H * W, 3, dtype=coord_all.dtype, device=features.device)
    for start in range(0, H * W, chunk):
        c = coord_all[start:start + chunk].unsqueeze(0).expand(B, -1, -1)
        q = query(head, features, c, cell_all.expand(B, c.shape[1], 2))
        out[:, start:start + chunk] = q
    return out.view(B, H, W, 3).permute(0, 3, 1, 2)                            # [B, 3, H, W]
