"""Reference sampler: super-resolution to any scale/size, generation, multi-size rendering.

Inputs/outputs are uint8 RGB arrays [H, W, 3] (or PIL images in).  Noise follows the RNG
contract of ``noise.py`` unless a ``noise(stream, shape)`` callable is given, which must
return float32 [num_samples, *shape] (stream 0 = z_T, stream k = k-th executed step).

SR pipeline (as the official code): pad the LR image to what the U-Net's downsamplings
accept, nearest-resize it by ``cond_scale``, encode -> ``cond``; DDIM from z_T with
``cond`` concatenated at every step; crop the latent back to the LR area; render through
D_phi + f_theta at round(s*h) x round(s*w) (or the given size); back-project the render
onto the LR (``consistency.py``, ``backproject`` iterations; 0 keeps the raw sample).
``fidelity`` (0..1) narrows the sampler's window (``diffusion.fidelity_window``): 0 the
paper's sampler; higher skips the noisiest steps (starting from the noised conditioning
latent) and exits early with the network's z_0 estimate.

Every network runs on the latent tiles of ``latent_tiles.choose`` (the runtime's plan) and
the whole sequence is ``tiled_sampling``'s, shared with the runtime: a latent that fits in
one tile is sampled exactly as without tiling.
"""
from __future__ import annotations

import weakref
from typing import Callable

import numpy as np
import torch

from . import costs, liif
from .core import consistency, contract, coords, diffusion, images, latent_tiles, noise as rng, tiled_sampling
from .model import LDMind

NoiseFn = Callable[[int, tuple], np.ndarray]


def as_uint8_rgb(image) -> np.ndarray:
    """PIL image or uint8 array [H, W, 3] -> uint8 array [H, W, 3]."""
    if hasattr(image, "convert"):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB array [H, W, 3], got {arr.dtype} {arr.shape}")
    return arr


def _device_dtype(model: LDMind) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def contract_noise(seed: int, num_samples: int) -> NoiseFn:
    return lambda stream, shape: rng.batch_gaussian(seed, stream, num_samples, tuple(shape))


# costs depend on the architecture only: measured once per model, not on every call (each
# measurement runs the networks on a probe latent)
_COSTS: "weakref.WeakKeyDictionary[LDMind, dict]" = weakref.WeakKeyDictionary()


def _costs(model: LDMind) -> dict:
    if model not in _COSTS:
        _COSTS[model] = costs.graph_costs(model)
    return _COSTS[model]


def plan(model: LDMind, h: int, w: int, steps: int, latent_tile: int | None = None,
         latent_overlap: int | None = None, graphs: tuple[str, ...] | None = None,
         align: int | None = None) -> latent_tiles.TilePlan:
    """The tile plan of an h x w latent, chosen as the runtime chooses it
    (``latent_tiles.choose`` on the costs measured from this model; no memory limit here)."""
    cfg = model.cfg
    measured = {k: v for k, v in _costs(model).items() if graphs is None or k in graphs}
    return latent_tiles.choose(h, w, align or cfg.tile_align, cfg.train_latent, measured, steps,
                               latent_tile, latent_overlap)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.float().cpu().numpy()


@torch.no_grad()
def sample_latents(model: LDMind, cond: np.ndarray | None, latent_shape: tuple[int, int, int],
                   steps: int, eta: float, noise: NoiseFn, num_samples: int,
                   p: latent_tiles.TilePlan | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   schedule: str = contract.DEFAULT_DDIM_SCHEDULE,
                   sampler: str = contract.DEFAULT_SAMPLER,
                   fidelity: float | None = None) -> np.ndarray:
    """From z_T = noise(0) to z_0 over the tiles of ``p``: float32 [num_samples, c, h, w].
    ``cond`` [1 or num_samples, c, h, w] or None.  ``schedule``: DDIM's "full" or "paper"
    (``contract.DDIM_SCHEDULES``); ``sampler``: "ddim" or "dpm++2m" (``contract.SAMPLERS``);
    ``fidelity``: 0..1, the window of ``diffusion.fidelity_window`` (ValueError outside); None:
    the task's default (upscale's with ``cond``, generation's without)."""
    fidelity = rng.fidelity_arg(rng.default_fidelity(cond is not None) if fidelity is None else fidelity)
    device, dtype = _device_dtype(model)
    schedule = diffusion.sampling_schedule(diffusion.alpha_bar_for(model.cfg.diffusion), steps, eta, schedule,
                                           sampler, fidelity, cond is not None)
    p = p or plan(model, latent_shape[1], latent_shape[2], steps)
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device, dtype)  # noqa: E731

    def make_step(cond_tiles, _n):
        c = None if cond_tiles is None else tensor(cond_tiles)

        def step(z_t, st, eps_noise):
            t = torch.full((z_t.shape[0],), st.t, dtype=torch.int64, device=device)
            coef = lambda v: torch.tensor([v], dtype=dtype, device=device)  # noqa: E731
            z, z0 = model.unet_step(tensor(z_t), c, t, coef(st.alpha_bar_t), coef(st.alpha_bar_prev),
                                    coef(st.sigma_t), tensor(eps_noise))
            return _np(z), _np(z0)
        return step

    tick = (lambda _s, k, n: progress(k, n)) if progress else None
    return tiled_sampling.denoise(make_step, cond, num_samples, latent_shape[0], schedule, noise, p, 1, tick)


@torch.no_grad()
def encode_lr(model: LDMind, lr: np.ndarray, latent_tile: int | None = None, latent_overlap: int | None = None,
              steps: int = contract.DEFAULT_STEPS) -> tuple[np.ndarray, tuple[int, int], latent_tiles.TilePlan]:
    """uint8 LR [h, w, 3] -> (cond [1, c, H', W'] of the padded LR, latent (h', w') of the LR
    itself, the tile plan of the padded latent), the encoder run tile by tile."""
    cfg = model.cfg
    device, dtype = _device_dtype(model)
    x = images.to_float(lr)
    unit = images.lr_pad_unit(cfg.cond_scale, cfg.autoencoder.downsample, model.unet.size_multiple)
    x = images.pad_lr(x, unit)[None]
    r = cfg.latent_per_lr_pixel
    p = plan(model, x.shape[2] * r, x.shape[3] * r, steps, latent_tile, latent_overlap)
    cond = tiled_sampling.encode(lambda t: _np(model.encode_lr(torch.from_numpy(t).to(device, dtype))), x, p, r)
    return cond, cfg.latent_size_for_lr(lr.shape[0], lr.shape[1]), p


def upscale_latents(model: LDMind, lr, steps: int = contract.DEFAULT_STEPS, eta: float = contract.DEFAULT_ETA,
                    seed: int = contract.DEFAULT_SEED, noise: NoiseFn | None = None,
                    num_samples: int = contract.DEFAULT_NUM_SAMPLES, latent_tile: int | None = None,
                    latent_overlap: int | None = None,
                    schedule: str = contract.DEFAULT_DDIM_SCHEDULE,
                    sampler: str = contract.DEFAULT_SAMPLER,
                    fidelity: float = contract.DEFAULT_FIDELITY) -> np.ndarray:
    """Sampled latents of an LR image, cropped to the LR area: [num_samples, c, h', w']."""
    if not model.cfg.unet.conditional:
        raise ValueError("this model is unconditional (generation): use generate()")
    lr = as_uint8_rgb(lr)
    cond, (lh, lw), p = encode_lr(model, lr, latent_tile, latent_overlap, steps)
    shape = (model.cfg.autoencoder.z_channels, cond.shape[2], cond.shape[3])
    z = sample_latents(model, cond, shape, steps, eta, noise or contract_noise(seed, num_samples), num_samples, p,
                       schedule=schedule, sampler=sampler, fidelity=fidelity)
    return np.ascontiguousarray(z[:, :, :lh, :lw])


@torch.no_grad()
def render(model: LDMind, z, sizes: list[tuple[int, int]], latent_tile: int | None = None,
           latent_overlap: int | None = None) -> list[np.ndarray]:
    """Render latents [N, c, h, w] at several (H, W): one uint8 array [N, H, W, 3] per size.
    The decoder runs once, over the tiles of its own plan (any size: align 1; tiled unless
    one piece is estimated cheaper); the queries go band by band as the runtime's
    (``tiled_sampling.queries``)."""
    device, dtype = _device_dtype(model)
    z = _np(z) if isinstance(z, torch.Tensor) else np.asarray(z, dtype=np.float32)
    N, _, h, w = z.shape
    p = plan(model, h, w, 0, latent_tile, latent_overlap, graphs=("decoder",), align=1)
    features = torch.from_numpy(tiled_sampling.decode(
        lambda t: _np(model.decode(torch.from_numpy(t).to(device, dtype))), z, p)).to(device, dtype)
    band = latent_tiles.render_band(p)
    out = []
    for H, W in sizes:
        img = np.empty((N, H * W, 3), dtype=np.float32)
        for window, start, stop, coord, cell in tiled_sampling.queries(H, W, h, band, model.cfg.liif.query_chunk):
            c = torch.from_numpy(coord).to(device).unsqueeze(0).expand(N, -1, -1)
            s = torch.from_numpy(np.ascontiguousarray(cell)).to(device).unsqueeze(0).expand(N, -1, -1)
            img[:, start:stop] = _np(liif.query(model.liif, features[:, :, window], c, s))
        out.append(images.to_uint8(img.reshape(N, H, W, 3).transpose(0, 3, 1, 2)))
    return out


def upscale(model: LDMind, lr, scale: float | None = None, size: tuple[int, int] | None = None,
            steps: int = contract.DEFAULT_STEPS, eta: float = contract.DEFAULT_ETA, seed: int = contract.DEFAULT_SEED,
            noise: NoiseFn | None = None, num_samples: int = contract.DEFAULT_NUM_SAMPLES,
            backproject: int = contract.DEFAULT_BACKPROJECT,
            latent_tile: int | None = None, latent_overlap: int | None = None,
            schedule: str = contract.DEFAULT_DDIM_SCHEDULE,
            sampler: str = contract.DEFAULT_SAMPLER,
            fidelity: float = contract.DEFAULT_FIDELITY) -> list[np.ndarray]:
    """Super-resolve ``lr`` by ``scale`` (round(s*h) x round(s*w)) or to ``size`` = (W, H).
    Returns ``num_samples`` uint8 arrays [H_out, W_out, 3]."""
    lr = as_uint8_rgb(lr)
    backproject = consistency.iterations_arg(backproject)
    H, W = coords.output_size(lr.shape[0], lr.shape[1], scale=scale, size=size)
    z = upscale_latents(model, lr, steps, eta, seed, noise, num_samples, latent_tile, latent_overlap, schedule,
                        sampler, fidelity)
    return [consistency.apply_inplace(np.ascontiguousarray(img), lr, backproject)
            for img in render(model, z, [(H, W)], latent_tile, latent_overlap)[0]]


def generate(model: LDMind, size: tuple[int, int], steps: int = contract.DEFAULT_STEPS,
             eta: float = contract.DEFAULT_ETA, seed: int = contract.DEFAULT_SEED, noise: NoiseFn | None = None,
             num_samples: int = contract.DEFAULT_NUM_SAMPLES,
             latent_size: tuple[int, int] | None = None, latent_tile: int | None = None,
             latent_overlap: int | None = None,
             schedule: str = contract.DEFAULT_DDIM_SCHEDULE,
             sampler: str = contract.DEFAULT_SAMPLER, zoom: bool = False,
             fidelity: float = contract.DEFAULT_GENERATION_FIDELITY) -> list[np.ndarray]:
    """Unconditional samples rendered at ``size`` = (W, H); the latent is the output's own
    scale (``latent_tiles.generation_latent``; sampled in tiles when large), the training
    latent stretched with ``zoom``, or ``latent_size`` = (h, w)."""
    if model.cfg.unet.conditional:
        raise ValueError("this model is conditional (super-resolution): use upscale()")
    H, W = coords.output_size(1, 1, size=size)
    m = model.cfg.tile_align
    lh, lw = latent_size or latent_tiles.generation_latent(H, W, model.cfg.autoencoder.downsample, m,
                                                           model.cfg.train_latent, zoom)
    if lh % m or lw % m:
        raise ValueError(f"latent size must be a multiple of {m}, got {lh}x{lw}")
    shape = (model.cfg.autoencoder.z_channels, lh, lw)
    p = plan(model, lh, lw, steps, latent_tile, latent_overlap)
    z = sample_latents(model, None, shape, steps, eta, noise or contract_noise(seed, num_samples), num_samples, p,
                       schedule=schedule, sampler=sampler, fidelity=fidelity)
    return list(render(model, z, [(H, W)], latent_tile, latent_overlap)[0])


def sample_batch(model: LDMind, cond: torch.Tensor, noise: torch.Tensor, steps: int = contract.DEFAULT_STEPS,
                 sampler: str = contract.DEFAULT_SAMPLER, eta: float = contract.DEFAULT_ETA,
                 fidelity: float = contract.DEFAULT_FIDELITY) -> torch.Tensor:
    """Latents of a batch of conditionings at once, untiled, for training (the ``sampled``
    stage of ``train.py``): ``sample_latents`` on the whole latent, every image of the batch
    its own conditioning and draw.  ``cond`` [B, c, h, w]; ``noise`` [steps + 1, B, c, h, w]
    (stream 0 the initial draw, stream k the k-th executed step's, used where that step has
    sigma_t > 0).  Returns z_0 [B, c, h, w], float32, on ``cond``'s device."""
    c = cond.float().cpu().numpy()
    z = sample_latents(model, c, c.shape[1:], steps, eta, lambda stream, _shape: noise[stream].float().cpu().numpy(),
                       len(c), latent_tiles.whole(*c.shape[2:]), sampler=sampler, fidelity=fidelity)
    return torch.from_numpy(z).to(cond.device)
