"""Image conversions and LR padding, torch-free (shared by reference and runtime).

Pixels: uint8 (or uint16) HWC RGB outside, float32 CHW in [-1, 1] inside: x / 127.5 - 1 for
uint8, x / 32767.5 - 1 for uint16 (both map 0 and the maximum to -1 and 1, so a 16-bit image
reaches the encoder with its full precision, and its 8-bit reduction with the same values
to within half an 8-bit level).
"""
from __future__ import annotations

import numpy as np


def pixel_max(dtype) -> int:
    """The largest pixel value of an image dtype: 255 (uint8) or 65535 (uint16)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be uint8 or uint16, got {dtype}")
    return int(np.iinfo(dtype).max)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 or uint16 [H, W, 3] -> float32 [3, H, W] in [-1, 1]."""
    half = np.float32(pixel_max(np.asarray(image).dtype) / 2.0)
    return (np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / half) - np.float32(1.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float [..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3], rounding halves up."""
    v = np.clip((np.asarray(x, dtype=np.float32) + 1.0) * 127.5, 0.0, 255.0)
    return np.floor(v + 0.5).astype(np.uint8).swapaxes(-3, -2).swapaxes(-2, -1)


def to_uint16(x: np.ndarray) -> np.ndarray:
    """float [..., 3, H, W] in [-1, 1] -> uint16 [..., H, W, 3], rounding halves up (float64:
    float32 resolves 65535 only to ~0.004, enough, but the rounding should not depend on it)."""
    v = np.clip((np.asarray(x, dtype=np.float64) + 1.0) * 32767.5, 0.0, 65535.0)
    return np.floor(v + 0.5).astype(np.uint16).swapaxes(-3, -2).swapaxes(-2, -1)


def to_pixels(x: np.ndarray, dtype) -> np.ndarray:
    """float [..., 3, H, W] in [-1, 1] -> ``dtype`` (uint8 or uint16) [..., H, W, 3]."""
    return to_uint16(x) if pixel_max(dtype) == 65535 else to_uint8(x)


def latent_per_lr_pixel(cond_scale: int, ae_downsample: int) -> int:
    """Latent cells per LR pixel along each side of a super-resolution model: the LR is
    resized by cond_scale, then the auto-encoder divides by ae_downsample."""
    return max(1, cond_scale // ae_downsample)


def lr_pad_unit(cond_scale: int, ae_downsample: int, unet_multiple: int) -> int:
    """LR pixels per U-Net size unit: LR sides padded to a multiple of this give latent
    sides (LR * cond_scale / ae_downsample) that the U-Net's downsamplings divide."""
    return max(1, unet_multiple * ae_downsample // cond_scale)


def pad_lr(lr: np.ndarray, unit: int) -> np.ndarray:
    """Pad a float [3, h, w] LR image on the bottom/right by mirroring (numpy 'symmetric')
    up to multiples of ``unit``; the padded region's latent is cropped after sampling."""
    _, h, w = lr.shape
    ph, pw = -h % unit, -w % unit
    if ph == 0 and pw == 0:
        return lr
    return np.pad(lr, ((0, 0), (0, ph), (0, pw)), mode="symmetric")
