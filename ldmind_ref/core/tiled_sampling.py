"""The sampling sequence over a latent tile plan, written once for the reference and the runtime.

Each stage takes the network as a callable on numpy float32 arrays, so the reference
(``sampler.py``, torch modules) and the runtime (``runtime/pipeline.py``, exported graphs)
run exactly the same tiles, blends, noise draws and query windows:

    cond     = encode(encode_fn, lr, plan)                 # LR tiles -> blended conditioning latent
    z_0      = denoise(make_step, cond, shape, schedule, noise, plan)
    features = decode(decode_fn, z_0, plan)                # blended D_phi features
    for window, start, stop, coord, cell in queries(...):  # LIIF queries, band by band
        rgb[start:stop] = query(features[..., window, :], coord, cell)

Networks see tiles stacked along the batch, tile-major: rows [k * N, (k + 1) * N) of a call
hold tile k of the N samples.  ``tile_batch`` bounds the tiles per call; tiles are blended in
index order, so the batching never changes the result.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from . import coords
from .contract import STAGE_DECODE, STAGE_DENOISE, STAGE_ENCODE
from .diffusion import DDIMStep, SolverStep, initial_latent, solver_update
from .latent_tiles import TilePlan, bands, blend, gather, window_cell, window_coords

Tick = Callable[[str, int, int], None]
# step(z_t [n*N, c, th, tw], st, noise [n*N, c, th, tw]) -> (z_prev, pred_z0), built per group of
# tiles (the unet_step graph's two outputs)
Step = Callable[[np.ndarray, "DDIMStep | SolverStep", np.ndarray], tuple[np.ndarray, np.ndarray]]


def groups(p: TilePlan, tile_batch: int) -> list[range]:
    """Tile index ranges of at most ``tile_batch`` tiles, in order."""
    return [range(a, min(a + tile_batch, len(p))) for a in range(0, len(p), max(1, tile_batch))]


def encode(encode_fn: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, p: TilePlan, r: int,
           tile_batch: int = 1, tick: Tick | None = None) -> np.ndarray:
    """Conditioning latent [1, c, h, w] of the padded LR ``lr`` [1, 3, h / r, w / r]: the
    encoder runs on the LR pixels of each latent tile (r latent cells per LR pixel)."""
    lp = p.scaled(r)
    out = None
    gs = groups(p, tile_batch)
    for g, ks in enumerate(gs, start=1):
        cond = encode_fn(np.ascontiguousarray(gather(lr, lp, ks)))
        if out is None:
            out = np.zeros((1, cond.shape[1], p.h, p.w), dtype=np.float32)
        blend(out, cond.reshape(len(ks), 1, *cond.shape[1:]), p, ks.start)
        if tick:
            tick(STAGE_ENCODE, g, len(gs))
    return out


def denoise(make_step: Callable[[np.ndarray | None, int], Step], cond: np.ndarray | None,
            num_samples: int, channels: int, schedule: list,
            noise: Callable[[int, tuple], np.ndarray], p: TilePlan, tile_batch: int = 1,
            tick: Tick | None = None) -> np.ndarray:
    """From z_T = noise(0) to z_0 over the tiles of p: float32 [N, c, h, w].

    ``schedule``: DDIMStep (the graph's z_prev is blended) or SolverStep (its pred_z0 is
    blended and the multistep update, ``diffusion.solver_update``, runs on the whole latent
    in float64: the blend is a normalised weighted mean, so this equals updating each tile).
    ``noise(stream, (c, h, w))`` -> [N, c, h, w] is drawn for the whole latent (the RNG
    contract: stream 0 is z_T, stream k the k-th executed step, drawn only when sigma_t > 0),
    so the result does not depend on the plan's batching; a schedule whose first step is
    ``from_cond`` (fidelity's window, ``diffusion.fidelity_window``) starts from ``cond`` noised
    by stream 0 (``diffusion.initial_latent``).
    ``make_step(cond_tiles, n)`` builds the step of a group of n tiles once (cond_tiles
    [n * N, c, th, tw] or None).  ``cond`` [1, c, h, w] conditions every sample alike;
    [N, c, h, w] gives each sample its own (a training batch: ``sampler.sample_batch``)."""
    N, shape = num_samples, (channels, p.h, p.w)
    gs = groups(p, tile_batch)
    steps = [make_step(None if cond is None else np.repeat(gather(cond, p, ks), N // len(cond), axis=0), len(ks))
             for ks in gs]
    z = initial_latent(noise(0, shape), cond, schedule[0])
    zeros = np.zeros_like(z)
    d_prev = None
    for k, st in enumerate(schedule, start=1):
        eps = noise(k, shape) if st.sigma_t > 0 else zeros
        solver = isinstance(st, SolverStep)
        out_all = np.zeros_like(z)
        for step, ks in zip(steps, gs):
            z_prev, pred = step(gather(z, p, ks), st, gather(eps, p, ks))
            out = pred if solver else z_prev
            blend(out_all, out.reshape(len(ks), N, *out.shape[1:]), p, ks.start)
        if solver:
            d = out_all.astype(np.float64)
            z, d_prev = solver_update(z.astype(np.float64), d, d_prev, st).astype(np.float32), d
        else:
            z = out_all
        if tick:
            tick(STAGE_DENOISE, k, len(schedule))
    return z


def decode(decode_fn: Callable[[np.ndarray], np.ndarray], z: np.ndarray, p: TilePlan,
           tile_batch: int = 1, tick: Tick | None = None) -> np.ndarray:
    """D_phi features [N, C, h, w] of latents z [N, c, h, w], blended over the tiles of p."""
    N = z.shape[0]
    out = None
    gs = groups(p, tile_batch)
    for g, ks in enumerate(gs, start=1):
        f = decode_fn(np.ascontiguousarray(gather(z, p, ks)))
        if out is None:
            out = np.zeros((N, f.shape[1], p.h, p.w), dtype=np.float32)
        blend(out, f.reshape(len(ks), N, *f.shape[1:]), p, ks.start)
        if tick:
            tick(STAGE_DECODE, g, len(gs))
    return out


def queries(H: int, W: int, h: int, band: int, chunk: int
            ) -> Iterator[tuple[slice, int, int, np.ndarray, np.ndarray]]:
    """The LIIF queries of an H x W render of an h-row latent, band by band of ``band``
    latent rows: (latent row window, flat start, flat stop, coord [Q, 2], cell [Q, 2]) with
    coordinates in the window's frame.  A query reads only its window, so the features of a
    band are all a call needs; one band (band >= h) is the plain whole-image render."""
    cell = coords.cells(H, W, 1)
    for a, b, i0, i1 in bands(H, h, band):
        wc = window_cell(cell, h, a, b)
        for start in range(i0 * W, i1 * W, chunk):
            stop = min(start + chunk, i1 * W)
            yield slice(a, b), start, stop, window_coords(coords.flat_coords(H, W, start, stop), h, a, b), \
                np.broadcast_to(wc, (stop - start, 2))


def num_queries(H: int, W: int, h: int, band: int, chunk: int) -> int:
    """How many calls ``queries`` makes (for progress)."""
    return sum(-(-((i1 - i0) * W) // chunk) for _, _, i0, i1 in bands(H, h, band))
