"""Coordinate math of the implicit decoder, torch-free (shared by reference and runtime).

Convention: a pixel is addressed by its centre in [-1, 1] on each axis, in (y, x) order,
y growing downwards, x to the right.  Row i of an image with H rows has centre
y_i = -1 + (2 i + 1) / H.  The cell of an output pixel is its size in the same units,
(2 / H, 2 / W).
"""
from __future__ import annotations

import math

import numpy as np

from .contract import EMPTY_OUTPUT, POSITIVE_NUMBER


def output_size(h: int, w: int, scale: float | None = None,
                size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(H_out, W_out) for an h x w input: ``size`` is (W, H); ``scale`` s gives
    round(s*h) x round(s*w) with halves rounded up (floor(s*n + 0.5), easy to match in C++)."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    if size is not None:
        W, H = (int(v) for v in size)
        if W < 1 or H < 1:
            raise ValueError(f"output size must be positive, got {W}x{H}")
        return H, W
    s = float(scale)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(POSITIVE_NUMBER.format("scale", scale))
    H, W = math.floor(s * h + 0.5), math.floor(s * w + 0.5)
    if H < 1 or W < 1:
        raise ValueError(EMPTY_OUTPUT.format(s, w, h))
    return H, W


def pixel_centres(n: int) -> np.ndarray:
    """Centres of n pixels along one axis, float64 [n]."""
    return -1.0 + (2.0 * np.arange(n, dtype=np.float64) + 1.0) / n


def grid_coords(H: int, W: int, row_start: int = 0, row_stop: int | None = None,
                col_start: int = 0, col_stop: int | None = None) -> np.ndarray:
    """(y, x) centres of the pixels of rows/cols [start, stop) of an H x W image,
    float32 [rows * cols, 2], row-major."""
    row_stop = H if row_stop is None else row_stop
    col_stop = W if col_stop is None else col_stop
    ys = (-1.0 + (2.0 * np.arange(row_start, row_stop, dtype=np.float64) + 1.0) / H)
    xs = (-1.0 + (2.0 * np.arange(col_start, col_stop, dtype=np.float64) + 1.0) / W)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=-1).astype(np.float32)


def flat_coords(H: int, W: int, start: int, stop: int) -> np.ndarray:
    """Pixel centres of the row-major flat indices [start, stop) of an H x W image, float32
    [stop - start, 2], bit-identical to ``grid_coords(H, W)[start:stop]`` without building
    the whole grid: the range is a partial first row, whole rows, a partial last row."""
    r0, c0 = divmod(start, W)
    r1, c1 = divmod(stop, W)
    if r0 == r1:
        return grid_coords(H, W, r0, r0 + 1, c0, c1)
    parts = [grid_coords(H, W, r0, r0 + 1, c0, W)]
    if r1 > r0 + 1:
        parts.append(grid_coords(H, W, r0 + 1, r1))
    if c1:
        parts.append(grid_coords(H, W, r1, r1 + 1, 0, c1))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def cells(H: int, W: int, n: int) -> np.ndarray:
    """Cell size (2/H, 2/W) repeated for n queries, float32 [n, 2]."""
    return np.broadcast_to(np.array([2.0 / H, 2.0 / W], dtype=np.float32), (n, 2)).copy()
