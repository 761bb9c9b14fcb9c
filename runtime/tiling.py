"""Tiled coordinate queries: the image is rendered tile by tile straight into uint8.

A tile is a range [start, stop) of the row-major pixel index of the H x W output, exactly
the chunks the reference renders (so the tile size never changes which pixels are asked
together in the default configuration).  Only the tile's own coordinates exist at any time:
peak memory is the uint8 output plus O(tile), whatever the scale.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from ldmind_ref import coords, images

from .errors import NumericalError

Progress = Callable[[str, int, int], None]


def tiles(H: int, W: int, tile: int) -> Iterator[tuple[int, int]]:
    """Flat index ranges covering H*W pixels, ``tile`` at a time."""
    n = H * W
    for start in range(0, n, tile):
        yield start, min(start + tile, n)


def tile_coords(H: int, W: int, start: int, stop: int) -> np.ndarray:
    """Pixel centres of flat indices [start, stop), float32 [stop - start, 2], bit-identical
    to ``coords.grid_coords(H, W)[start:stop]`` without building the whole grid: the range
    is a partial first row, whole rows, a partial last row."""
    r0, c0 = divmod(start, W)
    r1, c1 = divmod(stop, W)
    if r0 == r1:
        return coords.grid_coords(H, W, r0, r0 + 1, c0, c1)
    parts = [coords.grid_coords(H, W, r0, r0 + 1, c0, W)]
    if r1 > r0 + 1:
        parts.append(coords.grid_coords(H, W, r0 + 1, r1))
    if c1:
        parts.append(coords.grid_coords(H, W, r1, r1 + 1, 0, c1))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def rgb_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[B, Q, 3] floats in [-1, 1] -> uint8 [B, Q, 3] by the shared ``images.to_uint8``
    (viewed as a 1 x Q image so that rounding is the reference's, bit for bit)."""
    return images.to_uint8(rgb.transpose(0, 2, 1)[:, :, None, :])[:, 0]


def render_into(out: np.ndarray, query: Callable[[np.ndarray, np.ndarray], np.ndarray],
                tile: int, progress: Progress | None = None, label: str = "render") -> np.ndarray:
    """Fill ``out`` (uint8 [B, H, W, 3]) by querying ``query(coord [B,Q,2], cell [B,Q,2]) -> rgb
    [B,Q,3]`` tile by tile.  NaN or infinity from the graph raises ``NumericalError``."""
    B, H, W, _ = out.shape
    if not out.flags.c_contiguous:
        raise ValueError("render_into needs a C-contiguous output array")
    flat = out.reshape(B, H * W, 3)          # a view: tiles land in ``out`` directly
    cell = coords.cells(H, W, 1)             # (2/H, 2/W), the same for every query
    total = -(-(H * W) // tile)
    if progress:
        progress(label, 0, total)
    for k, (start, stop) in enumerate(tiles(H, W, tile), start=1):
        c = tile_coords(H, W, start, stop)
        n = stop - start
        coord_b = np.broadcast_to(c, (B, n, 2))
        cell_b = np.broadcast_to(cell, (B, n, 2))
        rgb = query(coord_b, cell_b)
        if not np.all(np.isfinite(rgb)):
            row, col = divmod(start + int(np.argwhere(~np.isfinite(rgb))[0][1]), W)
            raise NumericalError(f"the liif graph produced NaN/inf (first at output pixel x={col}, y={row}): "
                                 f"the engines are broken or the model diverged; no image was written")
        flat[:, start:stop] = rgb_to_uint8(rgb)
        if progress:
            progress(label, k, total)
    return out
