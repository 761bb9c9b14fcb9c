"""Valid random inputs for each graph (numpy only, torch-free).

Used by the export self-check, the tests and ``python -m export.reference``.  Values are
what the runtime feeds: latents ~ N(0, 1), LR pixels in [-1, 1], DDIM coefficients from
the model's real schedule, LIIF queries at pixel centres of real output sizes plus the
image borders and corners (where LIIF's epsilons matter).
"""
from __future__ import annotations

import numpy as np

from ldmind_ref.core import coords, diffusion

from .specs import GraphSpec


def dims_for(cfg, batch: int, latent: tuple[int, int], queries: int = 0) -> dict[str, int]:
    """Values of the symbolic dimensions for a batch and a latent size (h, w).

    The encoder's LR size (H, W) is the one whose conditioning latent is (h, w):
    H = h * ae_downsample / cond_scale (an error if that is not an integer)."""
    h, w = latent
    f, s = cfg.autoencoder.downsample, cfg.cond_scale
    if (h * f) % s or (w * f) % s:
        raise ValueError(f"latent {h}x{w} is not reachable from an LR image (x{s} then /{f})")
    return {"B": batch, "h": h, "w": w, "H": h * f // s, "W": w * f // s, "Q": queries}


def shape_of(tensor_shape, dims: dict[str, int]) -> tuple[int, ...]:
    return tuple(dims[d] if isinstance(d, str) else d for d in tensor_shape)


def query_points(h: int, w: int, scale: float, batch: int, limit: int | None = None,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """LIIF queries for a latent h x w rendered at ``scale`` (output round(s*h) x round(s*w)):
    coord, cell float32 [batch, Q, 2].

    All pixel centres if there are at most ``limit`` (or no limit); otherwise every pixel of
    the first/last rows and columns (borders and the four corners) plus a random sample of
    the interior, up to ``limit`` queries."""
    H, W = coords.output_size(h, w, scale=scale)
    grid = coords.grid_coords(H, W)                                           # [H*W, 2]
    if limit is not None and H * W > limit:
        idx = np.arange(H * W).reshape(H, W)
        border = np.unique(np.concatenate([idx[0], idx[-1], idx[:, 0], idx[:, -1]]))
        interior = np.setdiff1d(idx.ravel(), border)
        rng = np.random.default_rng(seed)
        take = rng.choice(interior, size=max(0, min(limit - border.size, interior.size)), replace=False)
        grid = grid[np.concatenate([border, np.sort(take)])]
    coord = np.broadcast_to(grid, (batch,) + grid.shape).copy()              # [B, Q, 2]
    cell = coords.cells(H, W, grid.shape[0])                                  # [Q, 2]
    return coord, np.broadcast_to(cell, coord.shape).copy()


def edge_queries(batch: int, cell: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The extreme coordinates: the four image corners (+-1, +-1), the edge midpoints and
    the centre, float32 [batch, 9, 2] each (coord, cell)."""
    v = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    grid = np.stack(np.meshgrid(v, v, indexing="ij"), axis=-1).reshape(-1, 2)  # [9, 2]
    coord = np.broadcast_to(grid, (batch, 9, 2)).copy()
    return coord, np.full_like(coord, cell)


def ddim_coefficients(cfg, steps: int = 20, eta: float = 1.0, index: int = 0) -> diffusion.DDIMStep:
    """The ``index``-th executed step (0 = the noisiest) of a DDIM run of the model."""
    schedule = diffusion.ddim_schedule(diffusion.alpha_bar_for(cfg.diffusion), steps, eta)
    return schedule[index]


def random_feed(spec: GraphSpec, cfg, dims: dict[str, int], seed: int = 0,
                step: diffusion.DDIMStep | None = None, coord: np.ndarray | None = None,
                cell: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Inputs for graph ``spec``: every input, named as in the spec, with its dtype."""
    rng = np.random.default_rng(seed)
    step = step or ddim_coefficients(cfg)
    feed: dict[str, np.ndarray] = {}
    for t in spec.inputs:
        shape = shape_of(t.shape, dims)
        if t.name == "lr":
            v = rng.uniform(-1.0, 1.0, shape)
        elif t.name == "timestep":
            # distinct per sample, so that a batch mix-up in the embedding shows
            v = rng.integers(0, cfg.diffusion.timesteps, shape)
        elif t.name in ("alpha_bar_t", "alpha_bar_prev", "sigma_t"):
            v = np.full(shape, getattr(step, t.name))
        elif t.name == "coord" and coord is not None:
            v = coord
        elif t.name == "cell" and cell is not None:
            v = cell
        elif t.name == "coord":
            v = rng.uniform(-1.0, 1.0, shape)
        elif t.name == "cell":
            v = np.full(shape, 2.0 / (4.0 * max(dims["h"], dims["w"])))
        else:  # latents, noise, features
            v = rng.standard_normal(shape)
        feed[t.name] = np.ascontiguousarray(v, dtype=np.dtype(t.dtype))
    return feed
