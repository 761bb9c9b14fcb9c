"""The statistics that measure generated images (``metrics``), pinned against published
formulas and hand-computed values, and ``python -m ldmind_ref.gen_eval`` on a tiny model."""
import json
import math

import numpy as np
import pytest

from ldmind_ref import gen_eval, metrics


def _power_law_noise(n: int, amplitude_exponent: float, seed: int = 0) -> np.ndarray:
    """Grey image whose Fourier amplitude falls as f^-a: its power spectrum slope is -2a."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    f[0, 0] = 1.0
    x = np.real(np.fft.ifft2(f ** -amplitude_exponent * np.exp(2j * np.pi * rng.random((n, n)))))
    x = (x - x.min()) / (x.max() - x.min()) * 255
    return np.repeat(np.round(x).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("a, slope", [(0.0, 0.0), (1.0, -2.0)])
def test_spectrum_slope_of_power_law_noise(a, slope):
    # amplitude ~ f^-1 is the 1/f^2 power of natural scenes (van der Schaaf & van Hateren 1996)
    assert metrics.spectrum_slope(_power_law_noise(256, a)) == pytest.approx(slope, abs=0.1)


def test_colourfulness_by_hand():
    assert metrics.colourfulness(np.full((4, 4, 3), 90, np.uint8)) == 0.0
    # uniform (200, 100, 50): rg = 100, yb = 0.5 * 300 - 50 = 100, no spread: M = 0.3 * sqrt(2) * 100
    assert metrics.colourfulness(np.full((4, 4, 3), (200, 100, 50), np.uint8)) == pytest.approx(30 * math.sqrt(2))


def test_gradient_energy_by_hand():
    img = np.zeros((6, 6, 3), np.uint8)
    img[:, 1::2] = 255            # columns alternate Y 16 and 235: 219 across, 0 down
    assert metrics.gradient_energy(img) == pytest.approx(219 / 2)


def test_frechet_distance_closed_forms():
    # 1-D: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2.  [-1, 1]: mu 0, var 2; [2, 6]: mu 4, var 8
    a, b = np.array([[-1.0], [1.0]]), np.array([[2.0], [6.0]])
    assert metrics.frechet_distance(a, b) == pytest.approx(16 + (math.sqrt(2) - math.sqrt(8)) ** 2)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 3))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    # independent coordinates: the sum of the 1-D distances
    y = np.stack([rng.normal(0, 1, 4000), rng.normal(0, 3, 4000)], 1)
    z = np.stack([rng.normal(1, 2, 4000), rng.normal(0, 3, 4000)], 1)
    sy, sz = y.std(0, ddof=1), z.std(0, ddof=1)
    want = float(((y.mean(0) - z.mean(0)) ** 2).sum() + ((sy - sz) ** 2).sum())
    assert metrics.frechet_distance(y, z) == pytest.approx(want, abs=0.02)


def test_image_stats_names():
    s = metrics.image_stats(_power_law_noise(64, 1.0))
    assert s.shape == (len(metrics.STAT_NAMES),) and np.isfinite(s).all()


def test_gen_eval_on_tiny(tmp_path, train_dir):
    from ldmind_ref.checkpoint import save_model
    from ldmind_ref.config import preset
    from ldmind_ref.model import random_model

    ck = tmp_path / "g.safetensors"
    save_model(ck, random_model(preset("tiny-gen"), 3))
    out = tmp_path / "eval"
    assert gen_eval.main(["--model", f"noise={ck}", "--data", str(train_dir), "--out", str(out),
                          "--samples", "3", "--size", "24", "--steps", "2"]) == 0
    res = json.loads((out / "generation.json").read_text())
    assert list(res["rows"]) == ["real crops (first set)", "real crops (second set)", "noise"]
    first, second, noise = res["rows"].values()
    assert first["fd_stats"] == pytest.approx(0.0, abs=1e-6) and second["fd_stats"] > 0
    assert noise["config"] == "tiny-gen" and noise["diversity"] > 0 and set(noise["mean"]) == set(metrics.STAT_NAMES)
    assert (out / "noise.png").exists() and (out / "real.png").exists()
    assert (out / "table.md").read_text().count("\n| ") == 1 + 3      # the header and a row per set
    # the same seeds give the same numbers
    assert gen_eval.main(["--model", f"noise={ck}", "--data", str(train_dir), "--out", str(tmp_path / "again"),
                          "--samples", "3", "--size", "24", "--steps", "2"]) == 0
    assert json.loads((tmp_path / "again" / "generation.json").read_text())["rows"]["noise"]["fd_stats"] == \
        noise["fd_stats"]
    with pytest.raises(SystemExit, match="LABEL=CHECKPOINT"):
        gen_eval.main(["--model", "x=/nonexistent", "--data", str(train_dir), "--out", str(out)])
