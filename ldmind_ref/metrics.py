"""Image quality metrics of the SR benchmarks (numpy only).

PSNR and SSIM are computed on the Y channel (ITU-R BT.601, [16, 235] range) of uint8 RGB
images with ``shave`` pixels cut from every border, LIIF's benchmark protocol.
"""
from __future__ import annotations

import numpy as np


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> float64 Y [H, W] in [16, 235]."""
    x = img.astype(np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def _shave(a: np.ndarray, s: int) -> np.ndarray:
    return a[s:a.shape[0] - s, s:a.shape[1] - s] if s > 0 else a


def psnr_y(a: np.ndarray, b: np.ndarray, shave: int) -> float:
    d = _shave(rgb_to_y(a) - rgb_to_y(b), shave)
    mse = float(np.mean(d ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def _gaussian_filter(x: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """'valid' separable Gaussian filtering of a 2-D array."""
    r = np.arange(size) - (size - 1) / 2
    k = np.exp(-r ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    x = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, x)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, x)


def ssim_gray(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) of two 2-D arrays."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
    var_a = _gaussian_filter(a * a) - mu_a ** 2
    var_b = _gaussian_filter(b * b) - mu_b ** 2
    cov = _gaussian_filter(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def ssim_y(a: np.ndarray, b: np.ndarray, shave: int) -> float:
    return ssim_gray(_shave(rgb_to_y(a), shave), _shave(rgb_to_y(b), shave))


def diversity(samples: list[np.ndarray]) -> float:
    """Mean over pixels and channels of the per-pixel standard deviation across samples (0..255)."""
    return float(np.std(np.stack(samples).astype(np.float64), axis=0).mean())
