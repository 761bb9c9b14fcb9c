"""Tiled coordinate queries: the image is rendered chunk by chunk straight into uint8 (or uint16).

The queries are ``ldmind_ref.core.tiled_sampling.queries``, the reference's own sequence: band by
band of latent rows (the whole latent in one band when sampling was untiled), and in each
band ranges [start, stop) of the row-major pixel index, ``tile`` at a time.  Only a chunk's
own coordinates exist at any time: peak memory is the uint8 output plus O(tile), whatever
the scale.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ldmind_ref.core import images, tiled_sampling
from ldmind_ref.core.contract import NOT_FINITE, STAGE_RENDER

from .errors import NumericalError

Progress = Callable[[str, int, int], None]
# query(latent row window, coord [B, Q, 2], cell [B, Q, 2]) -> rgb [B, Q, 3]
Query = Callable[[slice, np.ndarray, np.ndarray], np.ndarray]


def rgb_to_pixels(rgb: np.ndarray, dtype=np.uint8) -> np.ndarray:
    """[B, Q, 3] floats in [-1, 1] -> uint8 (or ``dtype`` uint16) [B, Q, 3] by the shared
    ``images.to_pixels`` (viewed as a 1 x Q image so that rounding is the reference's, bit
    for bit)."""
    return images.to_pixels(rgb.transpose(0, 2, 1)[:, :, None, :], dtype)[:, 0]


def render_into(out: np.ndarray, query: Query, h: int, band: int, tile: int,
                progress: Progress | None = None, label: str = STAGE_RENDER) -> np.ndarray:
    """Fill ``out`` (uint8 or uint16 [B, H, W, 3]) from an h-row latent, querying ``tile`` pixels per call
    in bands of ``band`` latent rows.  NaN or infinity from the graph raises ``NumericalError``."""
    B, H, W, _ = out.shape
    if not out.flags.c_contiguous:
        raise ValueError("render_into needs a C-contiguous output array")
    flat = out.reshape(B, H * W, 3)          # a view: chunks land in ``out`` directly
    total = tiled_sampling.num_queries(H, W, h, band, tile)
    if progress:
        progress(label, 0, total)
    for k, (window, start, stop, coord, cell) in enumerate(tiled_sampling.queries(H, W, h, band, tile), start=1):
        n = stop - start
        rgb = query(window, np.broadcast_to(coord, (B, n, 2)), np.broadcast_to(cell, (B, n, 2)))
        if not np.all(np.isfinite(rgb)):
            row, col = divmod(start + int(np.argwhere(~np.isfinite(rgb))[0][1]), W)
            raise NumericalError(NOT_FINITE.format("liif", f" (first at output pixel x={col}, y={row})"))
        flat[:, start:stop] = rgb_to_pixels(rgb, out.dtype)
        if progress:
            progress(label, k, total)
    return out
