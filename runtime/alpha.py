"""Transparency: colour through the model, alpha beside it on the same output grid.

The model knows colour only.  Alpha is not diffusion's business (an edge mask has no texture
to invent), so it is resized to the output size by PIL's bicubic filter, whose pixel centres
are those of the LIIF query grid, and attached to each sample.

Colour under a fully transparent pixel is invisible and arbitrary: editors store black (or
whatever was painted there).  The model and the back-projection read LR neighbourhoods, so
that colour would bleed into the visible edge: a dark fringe around every soft edge.  Before
upscaling, the colour of each fully transparent pixel is therefore replaced by the
alpha-weighted colour of the nearest visible ones (``bleed``: push-pull over an image
pyramid); visible pixels keep their colour exactly.  The output's colour under its own
transparent pixels is that filled colour, upscaled: smooth, never black.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def _half(x: np.ndarray) -> np.ndarray:
    """Mean over 2 x 2 blocks of [h, w, ...] (edge rows/columns repeated to even sizes)."""
    h, w = x.shape[:2]
    if h % 2 or w % 2:
        pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (x.ndim - 2)
        x = np.pad(x, pad, mode="edge")
    h, w = x.shape[:2]
    return x.reshape(h // 2, 2, w // 2, 2, *x.shape[2:]).mean(axis=(1, 3))


def bleed(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGB [h, w, 3] with every pixel whose ``alpha`` is 0 recoloured from its visible
    surroundings (push-pull), the others unchanged; uint8 or uint16, ``alpha`` of the same dtype.

    Push: premultiplied colour and coverage are averaged down a pyramid to one pixel.  Pull:
    from the top, each level's colour is its own premultiplied colour plus (1 - coverage)
    times the coarser level's colour, so holes take the colour of what is near them, from the
    finest level that sees anything."""
    top = float(np.iinfo(rgb.dtype).max)
    a = alpha.astype(np.float64) / top
    if not (a > 0).any():
        return rgb                       # nothing visible: nothing to take colour from
    levels = [(rgb.astype(np.float64) * a[:, :, None], a)]
    while max(levels[-1][1].shape) > 1:
        c, cov = levels[-1]
        levels.append((_half(c), _half(cov)))
    c, cov = levels[-1]
    colour = c / np.maximum(cov, 1e-12)[:, :, None]
    for c, cov in reversed(levels[:-1]):
        up = np.repeat(np.repeat(colour, 2, axis=0), 2, axis=1)[:c.shape[0], :c.shape[1]]
        colour = c + (1.0 - cov)[:, :, None] * up
    filled = np.clip(np.floor(colour + 0.5), 0, top).astype(rgb.dtype)
    return np.where((alpha > 0)[:, :, None], rgb, filled)


def resize(alpha: np.ndarray, H: int, W: int, dtype=None) -> np.ndarray:
    """alpha [h, w] -> ``dtype`` (default its own: uint8 or uint16) [H, W] by PIL bicubic
    (antialiased when shrinking); uint16 through Pillow's float mode, which it resizes with the
    same filter."""
    dtype = np.dtype(dtype or alpha.dtype)
    if alpha.dtype == np.uint8 and dtype == np.uint8:
        return np.asarray(Image.fromarray(alpha, "L").resize((W, H), Image.BICUBIC))
    top = float(np.iinfo(dtype).max)
    f = alpha.astype(np.float32) * np.float32(top / np.iinfo(alpha.dtype).max)
    big = np.asarray(Image.fromarray(f, "F").resize((W, H), Image.BICUBIC), dtype=np.float64)
    return np.floor(np.clip(big, 0.0, top) + 0.5).astype(dtype)


def working_bytes(num: int, H: int, W: int, itemsize: int = 1) -> int:
    """Memory beyond the RGB outputs: the resized alpha (and PIL's copy of it, float32 for
    16 bits) and each sample's RGBA array, at ``itemsize`` bytes per value."""
    return (4 * num * itemsize + 2 + 8 * (itemsize > 1)) * H * W
