"""Back-projection onto the LR (ldmind_ref/core/consistency.py): PIL-exact resampling, the
one-pass algebra equal to the textbook iteration, and outputs that shrink back to the input."""
import numpy as np
import pytest
from PIL import Image

from ldmind_ref.core import consistency
from ldmind_ref.core.consistency import BackProjection, Resampler, apply_inplace


def pil_resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    """Float [H, W] or [H, W, 3] resized by PIL bicubic in mode F (float32 pixels)."""
    if a.ndim == 3:
        return np.stack([pil_resize(a[..., c], w, h) for c in range(a.shape[2])], -1)
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize((w, h), Image.BICUBIC), dtype=np.float64)


@pytest.mark.parametrize("n_in,n_out", [(100, 25), (37, 5), (5, 37), (24, 288), (288, 24), (7, 7), (3, 1),
                                        (1, 9), (1000, 3), (30, 12)])
def test_resampler_is_pil_bicubic(n_in, n_out):
    x = np.random.default_rng(n_in * 1000 + n_out).uniform(0, 255, (n_in, 5))
    ours = Resampler(n_in, n_out).apply(x, axis=0)
    assert ours.shape == (n_out, 5)
    # PIL keeps float32 pixels: agreement to float32 rounding of values up to 255
    np.testing.assert_allclose(ours, pil_resize(x, 5, n_out), atol=5e-5, rtol=0)
    np.testing.assert_allclose(Resampler(n_in, n_out).dense() @ x, ours, atol=1e-9, rtol=0)


def naive_ibp(out: np.ndarray, lr: np.ndarray, iterations: int) -> np.ndarray:
    H, W = out.shape[:2]
    h, w = lr.shape[:2]
    v = out.astype(np.float64)
    for _ in range(iterations):
        v = v + pil_resize(lr - pil_resize(v, w, h), W, H)
    return v


@pytest.mark.parametrize("block", [1, 7, 64])
def test_one_pass_equals_textbook_iteration(block):
    rng = np.random.default_rng(block)
    out = rng.uniform(0, 255, (61, 45, 3))
    lr = rng.uniform(0, 255, (13, 11, 3))
    bp = BackProjection(lr, 61, 45, iterations=4)
    for r0 in range(0, 61, block):
        bp.add_rows(r0, out[r0:r0 + block])
    bp.solve()
    ours = out + np.concatenate([bp.correction(r0, min(r0 + block, 61)) for r0 in range(0, 61, block)])
    np.testing.assert_allclose(ours, naive_ibp(out, lr, 4), atol=1e-3, rtol=0)


def smooth(rng, h, w, lo=60, hi=190):
    """A smooth uint8 image away from 0/255 (no clipping in the tests below)."""
    base = rng.uniform(lo, hi, (4, 4, 3)).astype(np.float32)
    return np.clip(pil_resize(base, w, h), 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("scale", [2, 3.5, 8, 12])
def test_output_shrinks_back_to_the_input(scale):
    rng = np.random.default_rng(int(scale * 10))
    hr = smooth(rng, 96, 84)
    lr = np.asarray(Image.fromarray(hr).resize((int(84 // scale), int(96 // scale)), Image.BICUBIC))
    h, w = lr.shape[:2]
    # a "sample" that drifted: shifted colours plus noise
    drift = np.clip(hr.astype(np.float64) + rng.normal(0, 6, hr.shape) + [12, -9, 5], 0, 255).round().astype(np.uint8)
    before = np.abs(pil_resize(drift.astype(np.float64), w, h) - lr).mean()
    fixed = apply_inplace(drift.copy(), lr, iterations=10)
    after = np.abs(pil_resize(fixed.astype(np.float64), w, h) - lr).mean()
    assert before > 5 and after < 0.6, (before, after)
    # and it moved towards the ground truth (the drift was low-frequency)
    assert np.abs(fixed.astype(float) - hr).mean() < np.abs(drift.astype(float) - hr).mean()


def test_block_size_does_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(5)
    out = rng.integers(0, 256, (50, 33, 3), dtype=np.uint8)
    lr = rng.integers(0, 256, (10, 7, 3), dtype=np.uint8)
    whole = apply_inplace(out.copy(), lr, 3)
    monkeypatch.setattr(consistency, "block_rows", lambda W, pixels=0: 3)
    np.testing.assert_array_equal(apply_inplace(out.copy(), lr, 3), whole)


def test_zero_iterations_is_identity_and_bad_counts_are_refused():
    rng = np.random.default_rng(6)
    out = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    lr = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(apply_inplace(out.copy(), lr, 0), out)
    for bad in (-1, 101, 2.0, True, "3"):
        with pytest.raises(ValueError):
            consistency.iterations_arg(bad)


# -- issue 10: pinned against the textbook iteration and a direct rounding ----------------------
@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_iteration_count_is_honoured_against_the_textbook_loop(iterations):
    """apply_inplace with k iterations = the textbook loop out + U(lr - D out), k times (PIL
    bicubic in the test), rounded halves up and clipped; k = 10 (the default) is far off."""
    rng = np.random.default_rng(iterations)
    out = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    lr = rng.integers(0, 256, (10, 9, 3), dtype=np.uint8)
    ours = apply_inplace(out.copy(), lr, iterations).astype(int)
    textbook = np.floor(np.clip(naive_ibp(out, lr.astype(np.float64), iterations), 0, 255) + 0.5).astype(int)
    default = np.floor(np.clip(naive_ibp(out, lr.astype(np.float64), 10), 0, 255) + 0.5).astype(int)
    diff = np.abs(ours - textbook)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01        # float32 PIL vs float64: at most 1 LSB, rarely
    assert np.abs(default - textbook).mean() > 1.0             # another count is visibly another result


def test_final_rounding_is_half_up_and_clipped(monkeypatch):
    """The last step, computed directly: uint8(floor(clip(out + correction, 0, 255) + 0.5)).
    Exact halves separate half-up from half-to-even (np.round) and from truncation."""
    out = np.array([[[100, 101, 100], [98, 255, 0], [7, 7, 7]]], dtype=np.uint8)          # [1, 3, 3]
    corr = np.array([[[0.5, 0.5, 1.5], [0.5, 3.0, -3.0], [-0.5, 0.49, -0.51]]])
    monkeypatch.setattr(BackProjection, "solve", lambda self: None)
    monkeypatch.setattr(BackProjection, "correction", lambda self, r0, r1: corr[r0:r1])
    got = apply_inplace(out.copy(), np.zeros((1, 1, 3), np.uint8), iterations=3)
    np.testing.assert_array_equal(got, [[[101, 102, 102], [99, 255, 0], [7, 7, 6]]])
