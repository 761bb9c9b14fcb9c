"""Reference sampler: super-resolution to any scale/size, generation, multi-size rendering.

Inputs/outputs are uint8 RGB arrays [H, W, 3] (or PIL images in).  Noise follows the RNG
contract of ``noise.py`` unless a ``noise(stream, shape)`` callable is given, which must
return float32 [num_samples, *shape] (stream 0 = z_T, stream k = k-th executed step).

SR pipeline (as the official code): pad the LR image to what the U-Net's downsamplings
accept, nearest-resize it by ``cond_scale``, encode -> ``cond``; DDIM from z_T with
``cond`` concatenated at every step; crop the latent back to the LR area; render through
D_phi + f_theta at round(s*h) x round(s*w) (or the given size); back-project the render
onto the LR (``consistency.py``, ``backproject`` iterations; 0 keeps the raw sample).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from . import consistency, coords, diffusion, images, liif, noise as rng
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


@torch.no_grad()
def sample_latents(model: LDMind, cond: torch.Tensor | None, latent_shape: tuple[int, int, int],
                   steps: int, eta: float, noise: NoiseFn, num_samples: int,
                   progress: Callable[[int, int], None] | None = None,
                   schedule: str = diffusion.DEFAULT_DDIM_SCHEDULE) -> torch.Tensor:
    """DDIM from z_T = noise(0) to z_0: [num_samples, c, h, w]. ``cond`` [1, c, h, w] or None.
    ``schedule``: "full" or "paper" (``diffusion.DDIM_SCHEDULES``)."""
    device, dtype = _device_dtype(model)
    schedule = diffusion.ddim_schedule(diffusion.alpha_bar_for(model.cfg.diffusion), steps, eta, schedule)
    z = torch.from_numpy(noise(0, latent_shape)).to(device, dtype)
    if cond is not None:
        cond = cond.expand(num_samples, -1, -1, -1)
    zeros = torch.zeros_like(z)
    for k, st in enumerate(schedule, start=1):
        eps_noise = torch.from_numpy(noise(k, latent_shape)).to(device, dtype) if st.sigma_t > 0 else zeros
        t = torch.full((num_samples,), st.t, dtype=torch.int64, device=device)
        coef = lambda v: torch.tensor([v], dtype=dtype, device=device)  # noqa: E731
        z, _ = model.unet_step(z, cond, t, coef(st.alpha_bar_t), coef(st.alpha_bar_prev),
                               coef(st.sigma_t), eps_noise)
        if progress:
            progress(k, len(schedule))
    return z


@torch.no_grad()
def encode_lr(model: LDMind, lr: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 LR [h, w, 3] -> (cond [1, c, H', W'] of the padded LR, latent (h', w') of the LR itself)."""
    cfg = model.cfg
    device, dtype = _device_dtype(model)
    x = images.to_float(lr)
    unit = images.lr_pad_unit(cfg.cond_scale, cfg.autoencoder.downsample, model.unet.size_multiple)
    x = images.pad_lr(x, unit)
    cond = model.encode_lr(torch.from_numpy(x)[None].to(device, dtype))
    return cond, cfg.latent_size_for_lr(lr.shape[0], lr.shape[1])


def upscale_latents(model: LDMind, lr, steps: int = 50, eta: float = 1.0, seed: int = 0,
                    noise: NoiseFn | None = None, num_samples: int = 1,
                    schedule: str = diffusion.DEFAULT_DDIM_SCHEDULE) -> torch.Tensor:
    """Sampled latents of an LR image, cropped to the LR area: [num_samples, c, h', w']."""
    if not model.cfg.unet.conditional:
        raise ValueError("this model is unconditional (generation): use generate()")
    lr = as_uint8_rgb(lr)
    cond, (lh, lw) = encode_lr(model, lr)
    shape = (model.cfg.autoencoder.z_channels, cond.shape[2], cond.shape[3])
    z = sample_latents(model, cond, shape, steps, eta, noise or contract_noise(seed, num_samples), num_samples,
                       schedule=schedule)
    return z[:, :, :lh, :lw]


@torch.no_grad()
def render(model: LDMind, z: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Render latents at several (H, W): one uint8 array [N, H, W, 3] per size.
    The decoder runs once; only the queries depend on the size."""
    features = model.decode(z)
    out = []
    for H, W in sizes:
        img = liif.render(model.liif, features, H, W, model.cfg.liif.query_chunk)
        out.append(images.to_uint8(img.float().cpu().numpy()))
    return out


def upscale(model: LDMind, lr, scale: float | None = None, size: tuple[int, int] | None = None,
            steps: int = 50, eta: float = 1.0, seed: int = 0, noise: NoiseFn | None = None,
            num_samples: int = 1, backproject: int = consistency.DEFAULT_ITERATIONS,
            schedule: str = diffusion.DEFAULT_DDIM_SCHEDULE) -> list[np.ndarray]:
    """Super-resolve ``lr`` by ``scale`` (round(s*h) x round(s*w)) or to ``size`` = (W, H).
    Returns ``num_samples`` uint8 arrays [H_out, W_out, 3]."""
    lr = as_uint8_rgb(lr)
    backproject = consistency.iterations_arg(backproject)
    H, W = coords.output_size(lr.shape[0], lr.shape[1], scale=scale, size=size)
    z = upscale_latents(model, lr, steps, eta, seed, noise, num_samples, schedule)
    return [consistency.apply_inplace(np.ascontiguousarray(img), lr, backproject)
            for img in render(model, z, [(H, W)])[0]]


def generate(model: LDMind, size: tuple[int, int], steps: int = 50, eta: float = 1.0, seed: int = 0,
             noise: NoiseFn | None = None, num_samples: int = 1,
             latent_size: tuple[int, int] | None = None,
             schedule: str = diffusion.DEFAULT_DDIM_SCHEDULE) -> list[np.ndarray]:
    """Unconditional samples rendered at ``size`` = (W, H); the latent is the training
    latent size (crop / downsample) unless ``latent_size`` = (h, w) is given."""
    if model.cfg.unet.conditional:
        raise ValueError("this model is conditional (super-resolution): use upscale()")
    H, W = coords.output_size(1, 1, size=size)
    n = model.cfg.train.crop // model.cfg.autoencoder.downsample
    lh, lw = latent_size or (n, n)
    m = model.unet.size_multiple
    if lh % m or lw % m:
        raise ValueError(f"latent size must be a multiple of {m}, got {lh}x{lw}")
    shape = (model.cfg.autoencoder.z_channels, lh, lw)
    z = sample_latents(model, None, shape, steps, eta, noise or contract_noise(seed, num_samples), num_samples,
                       schedule=schedule)
    return list(render(model, z, [(H, W)])[0])
