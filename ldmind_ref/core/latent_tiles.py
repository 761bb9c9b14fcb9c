"""The latent tile plan: geometry, blending weights and the default tile size, torch-free.

Latent tiling (the method of MultiDiffusion / Mixture of Diffusers) lets a model trained on
small crops sample latents of any size in linear time and bounded memory: the latent is
covered by overlapping tiles, each network (encoder, U-Net, decoder) runs on tiles, and the
per-tile outputs are blended into one full-size array with smooth weights before the next
step.  Shared by the reference sampler and the runtime, so both tile identically.

Geometry (one axis; the 2-D plan is the product of two axes):
    - a latent of ``length`` cells is covered by n tiles of ``tile`` cells, n the fewest
      whose neighbours overlap by at least ``overlap`` cells; the first starts at 0, the last
      ends at ``length``, the others are spread evenly between, every start a multiple of
      ``align`` (the U-Net's size multiple, and whole LR pixels for the encoder);
    - a tile's weight is 1 in its interior and a raised-cosine ramp, sin^2, over each overlap
      with a neighbour; the rising ramp of one tile and the falling ramp of its neighbour add
      up to 1, and the sum over tiles is divided out anyway (``weights``), so every cell is a
      convex combination of the tiles that cover it;
    - a ``length`` no longer than ``tile`` is one tile of ``length`` cells: an untiled plan is
      the same computation as no tiling at all.

Why blending the DDIM update is exact: z_prev = a z_t + b eps + c noise is linear and
cell-wise, and z_t and the noise are the same in every tile (both are drawn for the whole
latent), so blending the tiles' z_prev equals one DDIM update with the blended eps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .contract import DEFAULT_TILE_FACTOR, LATENT_OVERLAP, LATENT_TILE, MIN_OVERLAP_FRACTION


def axis_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Starts of the tiles covering ``length`` cells (see the module docstring)."""
    if min(length, tile, align) < 1 or overlap < 0:
        raise ValueError(f"bad tile geometry: length={length} tile={tile} overlap={overlap} align={align}")
    if length <= tile:
        return [0]
    if tile % align or length % align:
        raise ValueError(f"tile {tile} and length {length} must be multiples of {align}")
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")
    # the fewest tiles whose evenly spread starts are at most tile - overlap apart
    span = length - tile
    n = -(-span // (tile - overlap)) + 1
    while True:
        starts = [((k * span) // (n - 1)) // align * align for k in range(n)]
        starts[-1] = span
        if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])):
            return starts
        n += 1        # rounding the starts down to ``align`` widened a gap: one tile more


def ramp(n: int) -> np.ndarray:
    """Rising weights over an overlap of n cells: sin^2(pi/2 * (i + 1/2) / n), float64 [n];
    ramp(n) + ramp(n)[::-1] == 1."""
    return np.sin(0.5 * np.pi * (np.arange(n, dtype=np.float64) + 0.5) / n) ** 2


def axis_weights(length: int, starts: list[int], tile: int) -> list[np.ndarray]:
    """Normalised weight of each tile over its own cells (float64 [min(tile, length)] each):
    on every cell the weights of the tiles covering it sum to 1."""
    size = min(tile, length)
    raw = []
    for k, s in enumerate(starts):
        w = np.ones(size, dtype=np.float64)
        if k > 0:                                   # overlap with the previous tile
            o = starts[k - 1] + size - s
            w[:o] = ramp(o)
        if k + 1 < len(starts):                     # overlap with the next tile
            o = s + size - starts[k + 1]
            w[size - o:] = np.minimum(w[size - o:], ramp(o)[::-1])
        raw.append(w)
    total = np.zeros(length, dtype=np.float64)
    for s, w in zip(starts, raw):
        total[s:s + size] += w
    return [w / total[s:s + size] for s, w in zip(starts, raw)]


@dataclass(frozen=True)
class TilePlan:
    """Tiles of an (h, w) latent: tile k covers rows [ys[i], ys[i] + th) and columns
    [xs[j], xs[j] + tw), k = i * len(xs) + j (row-major)."""
    h: int
    w: int
    th: int
    tw: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    wy: tuple[np.ndarray, ...] = field(repr=False)   # normalised weights per tile row, float64 [th]
    wx: tuple[np.ndarray, ...] = field(repr=False)   # per tile column, float64 [tw]
    tile: int = 0                    # the requested tile side and overlap (0, 0: untiled)
    overlap: int = 0

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def tiled(self) -> bool:
        return len(self) > 1

    def slices(self, k: int) -> tuple[slice, slice]:
        """(rows, cols) slices of tile k in the latent."""
        i, j = divmod(k, len(self.xs))
        return slice(self.ys[i], self.ys[i] + self.th), slice(self.xs[j], self.xs[j] + self.tw)

    def weight(self, k: int) -> np.ndarray:
        """Blending weight of tile k, float32 [th, tw] (the weights of all tiles sum to 1)."""
        i, j = divmod(k, len(self.xs))
        return np.outer(self.wy[i], self.wx[j]).astype(np.float32)

    def scaled(self, r: int) -> "TilePlan":
        """The same tiles in units r times coarser (latent cells -> LR pixels when the
        latent has r cells per LR pixel); weights are not carried."""
        return TilePlan(self.h // r, self.w // r, self.th // r, self.tw // r,
                        tuple(s // r for s in self.ys), tuple(s // r for s in self.xs), (), (),
                        self.tile // r, self.overlap // r)


def plan(h: int, w: int, tile: int, overlap: int, align: int = 1) -> TilePlan:
    """The tile plan of an h x w latent with square tiles of ``tile`` cells."""
    ys, xs = axis_starts(h, tile, overlap, align), axis_starts(w, tile, overlap, align)
    th, tw = min(tile, h), min(tile, w)
    return TilePlan(h, w, th, tw, tuple(ys), tuple(xs), tuple(axis_weights(h, ys, tile)),
                    tuple(axis_weights(w, xs, tile)), tile, overlap)


def whole(h: int, w: int) -> TilePlan:
    """The untiled plan: one tile of the whole latent."""
    return TilePlan(h, w, h, w, (0,), (0,), (np.ones(h),), (np.ones(w),))


def blend(out: np.ndarray, tiles: np.ndarray, p: TilePlan, first: int) -> None:
    """Add tiles ``first``, ``first + 1``, ... of ``tiles`` [n, B, C, th, tw] into ``out``
    [B, C, h, w] with their weights; ``out`` must start at zero.  Tiles are added in index
    order, so the result does not depend on how the tiles were batched."""
    for k, t in enumerate(tiles, start=first):
        rows, cols = p.slices(k)
        out[:, :, rows, cols] += t * p.weight(k)


def gather(x: np.ndarray, p: TilePlan, ks: range) -> np.ndarray:
    """Tiles ``ks`` of x [B, C, h, w] stacked along the batch: [len(ks) * B, C, th, tw]
    (tile-major: rows [k * B, (k + 1) * B) hold tile k)."""
    return np.concatenate([x[:, :, p.slices(k)[0], p.slices(k)[1]] for k in ks])


# -- default tile size ----------------------------------------------------------------------
def default_overlap(tile: int, align: int) -> int:
    """The overlap of a ``tile``: at least MIN_OVERLAP_FRACTION of it, a multiple of ``align``,
    at most half the tile."""
    return min(_round_up(math.ceil(MIN_OVERLAP_FRACTION * tile), align), tile // 2 // align * align)


def default_geometry(train_latent: int, align: int) -> tuple[int, int]:
    """(tile, overlap) in latent cells: DEFAULT_TILE_FACTOR x the training latent rounded up
    to ``align``, and its ``default_overlap``."""
    tile = _round_up(DEFAULT_TILE_FACTOR * train_latent, align)
    return tile, default_overlap(tile, align)


def native_latent(side: int, downsample: int, align: int) -> int:
    """Latent cells along an output ``side`` at the training scale (a cell covers
    ``downsample`` pixels, as the auto-encoder made it), rounded down to ``align``, at least
    ``align``: the latent a generation model samples for an image of its photos' scale."""
    return max(align, side // downsample // align * align)


def generation_latent(H: int, W: int, downsample: int, align: int, train_latent: int, zoom: bool) -> tuple[int, int]:
    """(lh, lw) that ``generate`` samples for an H x W image: the output's own scale
    (``native_latent`` per side: detail at the scale of the training photos, tiled when larger
    than the training latent), or with ``zoom`` the training latent stretched to the size
    (cells of about size / train_latent pixels: the blocky look)."""
    if zoom:
        return train_latent, train_latent
    return native_latent(H, downsample, align), native_latent(W, downsample, align)


def check_geometry(tile: int, overlap: int, align: int) -> None:
    """Refuse a user's tile/overlap with one clear line (ValueError)."""
    if tile < align or tile % align:
        raise ValueError(LATENT_TILE.format(align, tile))
    if overlap < 0 or overlap % align or overlap > tile // 2:
        raise ValueError(LATENT_OVERLAP.format(align, tile // 2, overlap))


def graph_cost(cost: dict, h: int, w: int) -> float:
    """Estimated multiply-adds of one graph call on an h x w latent (batch 1) from its
    manifest entry ``{"macs_per_cell": m, "attention": [{"stride", "channels"}, ...]}``:
    convolutions grow with the area, each attention layer with its token count squared."""
    macs = cost["macs_per_cell"] * h * w
    for a in cost["attention"]:
        t = (h / a["stride"]) * (w / a["stride"])
        macs += 2.0 * t * t * a["channels"]
    return macs


def graph_memory(cost: dict, h: int, w: int) -> float:
    """Estimated working bytes of one graph call on an h x w latent (batch 1) from its
    manifest entry's ``memory`` terms [[a, b], ...] (measured on the graph by
    ``export.activations``): the largest a c + b c^2, c = h w cells."""
    c = float(h * w)
    return max(a * c + b * c * c for a, b in cost["memory"])


def sampling_cost(costs: dict, p: TilePlan, steps: int) -> float:
    """Estimated multiply-adds under plan p of the graphs in ``costs``: the U-Net ``steps``
    times, the encoder and decoder (where given) once."""
    per_tile = sum(graph_cost(c, p.th, p.tw) * (steps if name == "unet_step" else 1) for name, c in costs.items())
    return len(p) * per_tile


def choose(h: int, w: int, align: int, train_latent: int, costs: dict, steps: int,
           tile: int | None = None, overlap: int | None = None,
           fits: Callable[[int, int], bool] | None = None) -> TilePlan:
    """The plan to sample an h x w latent with.  ``tile``/``overlap`` given: that plan.

    Otherwise the default tiles (``default_geometry``), shrunk in steps of ``align`` (not
    below the training latent) while one graph call on a tile is not within memory
    (``fits(th, tw)``; None: no limit), unless the latent in one piece both fits and is
    estimated cheaper (``sampling_cost``)."""
    if tile is not None or overlap is not None:
        t = default_geometry(train_latent, align)[0] if tile is None else tile
        o = default_overlap(t, align) if overlap is None else overlap
        check_geometry(t, o, align)
        return plan(h, w, t, o, align)
    fits = fits or (lambda th, tw: True)
    t = default_geometry(train_latent, align)[0]
    smallest = _round_up(train_latent, align)
    while t > smallest and not fits(min(t, h), min(t, w)):
        t -= align
    tiled = plan(h, w, t, default_overlap(t, align), align)
    if not tiled.tiled:
        return tiled
    one = whole(h, w)
    if fits(h, w) and sampling_cost(costs, one, steps) <= sampling_cost(costs, tiled, steps):
        return one
    return tiled


def render_band(p: TilePlan) -> int:
    """Latent rows per render band: a tile's height when tiled, else the whole latent (the
    plain render)."""
    return p.th if p.tiled else p.h


# -- rendering by latent row bands ----------------------------------------------------------
def band_rows(H: int, h: int, a: int, b: int) -> tuple[int, int]:
    """Output rows [i0, i1) of an H-row image whose centres fall in latent rows [a, b) of h:
    centre of row i at latent position (2i + 1) h / 2H, so a <= that < b, in integers."""
    i0 = -((h - 2 * a * H) // (2 * h))           # ceil((2aH - h) / 2h)
    i1 = -((h - 2 * b * H) // (2 * h))
    return max(0, min(H, i0)), max(0, min(H, i1))


def bands(H: int, h: int, rows: int) -> list[tuple[int, int, int, int]]:
    """Render bands of ``rows`` latent rows: (window_start, window_stop, i0, i1) with the
    latent window [a - 1, b + 1) (clipped) that holds every LIIF neighbour of output rows
    [i0, i1): a query at latent position u reads cells floor(u -+ 1/2), within one of [a, b)."""
    out = []
    for a in range(0, h, rows):
        b = min(h, a + rows)
        i0, i1 = band_rows(H, h, a, b)
        if i1 > i0:
            out.append((max(0, a - 1), min(h, b + 1), i0, i1))
    return out


def window_coords(coord: np.ndarray, h: int, a: int, b: int) -> np.ndarray:
    """Query coordinates (y, x) in [-1, 1] of the whole latent -> the same points in the frame
    of latent rows [a, b) (float32; x is unchanged).  The identity when the window is whole,
    so an untiled render is bit-identical to one without windows."""
    if a == 0 and b == h:
        return coord
    out = coord.astype(np.float64)
    out[..., 0] = ((out[..., 0] + 1.0) * (h / 2.0) - a) * (2.0 / (b - a)) - 1.0
    return out.astype(np.float32)


def window_cell(cell: np.ndarray, h: int, a: int, b: int) -> np.ndarray:
    """Output pixel size in the window frame: rows scale by h / (b - a)."""
    if a == 0 and b == h:
        return cell
    out = cell.astype(np.float64)
    out[..., 0] *= h / (b - a)
    return out.astype(np.float32)


def _round_up(v: int, m: int) -> int:
    return -(-int(v) // m) * m
