"""LR consistency by iterative back-projection, torch-free (shared by reference and runtime).

A super-resolved image is *consistent* with its input when shrinking it the way small
images are made (PIL bicubic, antialiased) gives the input back.  Diffusion samples are
not: with a small auto-encoder their colours and low frequencies drift from the LR (a
face 4 levels too green, a sky too dark).  Iterative back-projection (Irani & Peleg, 1991)
repairs exactly that part and keeps the sampled detail: with D the bicubic downscale to
the LR size and U the bicubic upscale to the output size,

    out_{k+1} = out_k + U (lr - D out_k)          for k < iterations.

Because D and U are linear this never needs more than one pass over the output: with
out_k = out_0 + U c_k,   c_{k+1} = c_k + (lr - D out_0) - (D U) c_k,   so the iteration runs
on LR-sized arrays and the output is read once (``add_rows``: accumulate D out_0 row block
by row block) and written once (``correction``: U c for a row block).  D and U are
separable; each axis is a banded matrix (``Resampler``) equal to PIL's float resampling.

Arrays are float64 pixel values (0..255 for uint8 images, 0..65535 for uint16: the method is
linear, so it works in either unit), [rows, cols, 3] (HWC, as the images).
"""
from __future__ import annotations

import numpy as np

from .contract import BACKPROJECT, DEFAULT_BACKPROJECT, MAX_BACKPROJECT

_BICUBIC_A = -0.5        # PIL's bicubic kernel (Keys, a = -0.5)
_BICUBIC_SUPPORT = 2.0


def _bicubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    a = _BICUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


class Resampler:
    """PIL's bicubic resampling of one axis from ``n_in`` to ``n_out`` samples, banded:
    output i = sum_k weights[i, k] * input[start[i] + k].  Downscaling widens the kernel by
    the factor (antialiasing); weights are normalised per output sample, as in PIL."""

    def __init__(self, n_in: int, n_out: int):
        if n_in < 1 or n_out < 1:
            raise ValueError(f"resampling needs positive sizes, got {n_in} -> {n_out}")
        self.n_in, self.n_out = n_in, n_out
        scale = n_in / n_out
        filterscale = max(scale, 1.0)
        support = _BICUBIC_SUPPORT * filterscale
        centre = (np.arange(n_out, dtype=np.float64) + 0.5) * scale
        # int() of C truncates towards zero; clamped to the input like PIL
        lo = np.clip(np.trunc(centre - support + 0.5), 0, n_in).astype(np.int64)
        hi = np.clip(np.trunc(centre + support + 0.5), 0, n_in).astype(np.int64)
        k = int((hi - lo).max())
        taps = lo[:, None] + np.arange(k)[None, :]                        # [n_out, k]
        w = _bicubic((taps - centre[:, None] + 0.5) / filterscale)
        w = np.where(taps < hi[:, None], w, 0.0)
        total = w.sum(axis=1, keepdims=True)
        self.weights = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
        self.start = lo
        self.taps = np.minimum(taps, n_in - 1)  # out-of-range taps carry weight 0

    def apply(self, x: np.ndarray, axis: int) -> np.ndarray:
        """Resample ``x`` along ``axis`` (length n_in) -> that axis has length n_out."""
        x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
        out = np.zeros((self.n_out,) + x.shape[1:])
        extra = (slice(None),) + (None,) * (x.ndim - 1)
        for k in range(self.weights.shape[1]):
            out += self.weights[:, k][extra] * x[self.taps[:, k]]
        return np.moveaxis(out, 0, axis)

    def dense(self, in_start: int = 0, in_stop: int | None = None) -> np.ndarray:
        """Columns [in_start, in_stop) of the matrix, float64 [n_out, in_stop - in_start].
        Only the output rows whose band meets those columns are visited (``start`` is
        non-decreasing), so a thin column block costs its own size, not the whole band."""
        in_stop = self.n_in if in_stop is None else in_stop
        k = self.weights.shape[1]
        i0 = int(np.searchsorted(self.start + k, in_start, side="right"))
        i1 = int(np.searchsorted(self.start, in_stop, side="left"))
        m = np.zeros((self.n_out, in_stop - in_start))
        cols = self.taps[i0:i1]
        keep = (cols >= in_start) & (cols < in_stop)
        rows = np.broadcast_to(np.arange(i0, i1)[:, None], cols.shape)
        np.add.at(m, (rows[keep], cols[keep] - in_start), self.weights[i0:i1][keep])
        return m

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows [r0, r1) of the matrix, float64 [r1 - r0, n_in]."""
        m = np.zeros((r1 - r0, self.n_in))
        for k in range(self.weights.shape[1]):
            np.add.at(m, (np.arange(r1 - r0), self.taps[r0:r1, k]), self.weights[r0:r1, k])
        return m


class BackProjection:
    """Back-projection of one H x W output onto its h x w LR input (see the module doc).

    Use: ``add_rows(r0, rows)`` for every row block of the raw output (any order, each row
    once), then ``solve()``, then ``correction(r0, r1)`` per row block, added to the output."""

    def __init__(self, lr: np.ndarray, H: int, W: int, iterations: int = DEFAULT_BACKPROJECT):
        lr = np.asarray(lr, dtype=np.float64)
        if lr.ndim != 3 or lr.shape[2] != 3:
            raise ValueError(f"lr must be [h, w, 3], got {lr.shape}")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.lr, self.H, self.W, self.iterations = lr, H, W, iterations
        h, w = lr.shape[:2]
        self.down_y, self.down_x = Resampler(H, h), Resampler(W, w)
        self.up_y, self.up_x = Resampler(h, H), Resampler(w, W)
        self.down_out = np.zeros_like(lr)      # D out_0, accumulated by add_rows
        self.c = np.zeros_like(lr)

    def add_rows(self, r0: int, rows: np.ndarray) -> None:
        """Accumulate D of output rows [r0, r0 + n): ``rows`` [n, W, 3] pixel values."""
        n = rows.shape[0]
        narrow = self.down_x.apply(rows, axis=1)                       # [n, w, 3]
        self.down_out += np.tensordot(self.down_y.dense(r0, r0 + n), narrow, axes=1)

    def _down_up(self, resample_down: Resampler, resample_up: Resampler) -> np.ndarray:
        # (D U) of one axis, [n_lr, n_lr]: D's band is dense here only in n_lr x block pieces
        n_lr, n_big = resample_down.n_out, resample_down.n_in
        out = np.zeros((n_lr, n_lr))
        step = max(1, (1 << 22) // max(1, n_lr))
        for a in range(0, n_big, step):
            b = min(a + step, n_big)
            out += resample_down.dense(a, b) @ resample_up.rows(a, b)
        return out

    def solve(self) -> np.ndarray:
        """The LR-sized coefficients c (``iterations`` Richardson steps), [h, w, 3]."""
        a_y = self._down_up(self.down_y, self.up_y)
        a_x = self._down_up(self.down_x, self.up_x)
        residual = self.lr - self.down_out
        c = np.zeros_like(self.lr)
        for _ in range(self.iterations):
            # (D U) c along both axes: rows by a_y, columns by a_x
            c = c + residual - np.tensordot(a_y, np.einsum("lj,kjc->klc", a_x, c, optimize=True), axes=1)
        self.c = c
        return c

    def correction(self, r0: int, r1: int) -> np.ndarray:
        """U c for output rows [r0, r1), [r1 - r0, W, 3]."""
        tall = self.up_y.rows(r0, r1)                              # [n, h]
        return self.up_x.apply(np.tensordot(tall, self.c, axes=1), axis=1)


def block_rows(W: int, pixels: int = 1 << 18) -> int:
    """Rows per block so that a float64 block stays near ``pixels`` pixels."""
    return max(1, pixels // max(1, W))


def apply_inplace(out: np.ndarray, lr: np.ndarray, iterations: int = DEFAULT_BACKPROJECT) -> np.ndarray:
    """Back-project ``out`` (uint8 or uint16 [H, W, 3]) onto ``lr`` [h, w, 3] in place (in
    float64, rounded halves up, clipped to 0..the dtype's maximum) and return it.  ``lr`` is
    taken in ``out``'s unit: a uint8 LR for a uint16 output is scaled by 257 first (so is a
    uint16 LR for a uint8 output, by 1/257).  ``iterations`` 0 leaves ``out`` unchanged."""
    if iterations == 0:
        return out
    top = float(np.iinfo(out.dtype).max)
    if lr.dtype != out.dtype and lr.dtype in (np.uint8, np.uint16):
        lr = lr.astype(np.float64) * (top / np.iinfo(lr.dtype).max)
    H, W = out.shape[:2]
    bp = BackProjection(lr, H, W, iterations)
    n = block_rows(W)
    for r0 in range(0, H, n):
        bp.add_rows(r0, out[r0:r0 + n].astype(np.float64))
    bp.solve()
    for r0 in range(0, H, n):
        r1 = min(r0 + n, H)
        v = out[r0:r1].astype(np.float64) + bp.correction(r0, r1)
        out[r0:r1] = np.floor(np.clip(v, 0.0, top) + 0.5).astype(out.dtype)
    return out


def iterations_arg(v) -> int:
    """Validate an iteration count (shared by the CLIs and APIs)."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= MAX_BACKPROJECT:
        raise ValueError(BACKPROJECT.format(MAX_BACKPROJECT, repr(v)))
    return int(v)

