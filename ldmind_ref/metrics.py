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


# -- statistics of generated images (no learned backbone: LPIPS/FID weights are unreachable) --

def spectrum_slope(img: np.ndarray, lo: float = 1 / 32, hi: float = 1 / 4) -> float:
    """Slope of log radial power against log frequency of the Y channel (Hann window, mean
    removed), fitted between ``lo`` and ``hi`` cycles per pixel.  Photographs of natural
    scenes fall near -2 (van der Schaaf & van Hateren 1996); white noise is 0, and a blurry
    image is steeper."""
    y = rgb_to_y(img)
    h, w = y.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    p = np.abs(np.fft.fft2((y - y.mean()) * win)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    keep = (f >= lo) & (f <= hi)
    # the average power per frequency ring, so that each ring counts once in the fit
    rings = np.round(np.log(f[keep]) * 16).astype(np.int64)
    uniq, inv = np.unique(rings, return_inverse=True)
    logf = np.bincount(inv, np.log(f[keep])) / np.bincount(inv)
    logp = np.log(np.bincount(inv, p[keep]) / np.bincount(inv))
    return float(np.polyfit(logf, logp, 1)[0]) if len(uniq) > 1 else float("nan")


def colourfulness(img: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M of a uint8 RGB image: 0 for grey."""
    r, g, b = (img[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def gradient_energy(img: np.ndarray) -> float:
    """Mean absolute difference of neighbouring Y values, both directions (0..219)."""
    y = rgb_to_y(img)
    return float((np.abs(np.diff(y, axis=0)).mean() + np.abs(np.diff(y, axis=1)).mean()) / 2)


STAT_NAMES = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "colourfulness", "gradient",
              "spectrum_slope")


def image_stats(img: np.ndarray) -> np.ndarray:
    """float64 [len(STAT_NAMES)]: colour moments, colourfulness, gradient energy, spectrum slope."""
    x = img.reshape(-1, 3).astype(np.float64)
    return np.concatenate([x.mean(0), x.std(0), [colourfulness(img), gradient_energy(img), spectrum_slope(img)]])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of ``a`` and of ``b`` [n, d]:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Dowson & Landau 1982), the formula
    of FID.  tr (S_a S_b)^(1/2) = tr (S_a^(1/2) S_b S_a^(1/2))^(1/2), a symmetric matrix."""
    a, b = np.atleast_2d(a.astype(np.float64)), np.atleast_2d(b.astype(np.float64))
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))

    def sqrt_psd(m):
        w, v = np.linalg.eigh((m + m.T) / 2)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ra = sqrt_psd(sa)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(ra @ sb @ ra), 0, None)).sum()
    return max(0.0, float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * cross))   # >= 0 up to rounding
