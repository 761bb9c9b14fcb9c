"""Latent tiling (issue 9): the plan's geometry pinned by hand, blending exactness, the query
windows against the whole-image render, reference/runtime parity with tiles, determinism
across tile batching and threads, and large inputs no longer refused."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ldmind_ref import liif, sampler
from ldmind_ref.checkpoint import load_model
from ldmind_ref.core import coords, latent_tiles as lt, tiled_sampling
from runtime import Pipeline, pipeline as rt_pipeline


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# -- geometry, pinned by hand -------------------------------------------------------------------
@pytest.mark.parametrize("length, tile, overlap, align, starts", [
    (10, 16, 4, 2, [0]),                       # shorter than a tile: one tile, untiled
    (16, 16, 4, 2, [0]),
    (28, 16, 4, 2, [0, 12]),                   # 2 tiles: gap 12 = tile - overlap
    (40, 16, 4, 4, [0, 12, 24]),               # span 24 in 2 gaps of 12
    (41, 16, 4, 1, [0, 8, 16, 25]),            # n = ceil(25 / 12) + 1 = 4 at floor(k * 25 / 3)
])
def test_axis_starts_by_hand(length, tile, overlap, align, starts):
    got = lt.axis_starts(length, tile, overlap, align)
    assert got == starts
    for a, b in zip(got, got[1:]):
        assert b - a <= tile - overlap and a % align == 0       # every overlap >= the asked one
    assert got[-1] + min(tile, length) == length                # the last tile ends at the edge


def test_starts_stay_aligned_when_rounding_widens_a_gap():
    # span 44 over n = ceil(44 / 12) + 1 = 5 tiles: floor(k * 11) = 0, 11, 22, 33 -> aligned
    # to 4: 0, 8, 20, 32, 44: gap 12 ok; every start a multiple of 4
    got = lt.axis_starts(60, 16, 4, 4)
    assert all(s % 4 == 0 for s in got) and got[0] == 0 and got[-1] == 44
    assert max(b - a for a, b in zip(got, got[1:])) <= 12


def test_ramp_is_the_raised_cosine():
    # sin^2(pi/8) = (1 - cos(pi/4)) / 2 = 0.14644660940672624, sin^2(3 pi/8) = 0.8535533905932737
    np.testing.assert_allclose(lt.ramp(2), [0.14644660940672624, 0.8535533905932737], rtol=0, atol=1e-15)
    np.testing.assert_allclose(lt.ramp(1), [0.5], atol=1e-15)
    for n in (1, 3, 8, 24):
        np.testing.assert_allclose(lt.ramp(n) + lt.ramp(n)[::-1], 1.0, atol=1e-15)


@pytest.mark.parametrize("length, tile, overlap", [(28, 16, 4), (100, 24, 6), (97, 32, 16), (7, 8, 2)])
def test_weights_partition_unity_and_are_smooth(length, tile, overlap):
    starts = lt.axis_starts(length, tile, overlap)
    ws = lt.axis_weights(length, starts, tile)
    total = np.zeros(length)
    for s, w in zip(starts, ws):
        assert np.all(w > 0)
        total[s:s + len(w)] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    if len(starts) > 1:
        # a tile is 1 away from its neighbours and below 1 inside an overlap
        assert ws[0][0] == 1.0 and ws[0][-1] < 0.5 and ws[-1][-1] == 1.0


def test_plan_blend_of_identical_tiles_is_exact():
    """Tiles that agree on their overlaps blend back into the same array (weights sum to 1)."""
    p = lt.plan(30, 44, 16, 4, 2)
    assert len(p) == len(p.ys) * len(p.xs) > 4 and p.tiled
    x = np.random.RandomState(0).randn(2, 3, 30, 44).astype(np.float32)
    out = tiled_sampling.decode(lambda t: t * 2.0, x, p, tile_batch=3)
    np.testing.assert_allclose(out, 2 * x, rtol=0, atol=1e-5)


def test_encode_tiles_are_lr_pixels_of_latent_tiles():
    """With r latent cells per LR pixel, the encoder sees LR tile k = latent tile k / r."""
    p = lt.plan(24, 32, 8, 2, 2)
    lr = np.random.RandomState(1).randn(1, 3, 12, 16).astype(np.float32)
    # a cell-wise "encoder": nearest upsample x2 and negate
    enc = tiled_sampling.encode(lambda t: -np.repeat(np.repeat(t, 2, 2), 2, 3), lr, p, 2, tile_batch=2)
    np.testing.assert_allclose(enc, -np.repeat(np.repeat(lr, 2, 2), 2, 3), atol=1e-6)


def test_band_rows_against_float_centres():
    """Independent check: row i belongs to the band holding floor((2i + 1) h / 2H)."""
    for H, h in ((7, 3), (100, 24), (24, 100), (385, 96), (1, 5), (96, 96)):
        cells = np.floor((2 * np.arange(H) + 1) * h / (2 * H)).astype(int)
        for band in (1, 2, 5, 24, 1000):
            covered = []
            for a, b, i0, i1 in lt.bands(H, h, band):
                rows = np.arange(i0, i1)
                assert np.all((cells[rows] >= a) & (cells[rows] < b))          # inside the window
                assert np.all((cells[rows] >= a + (a > 0)) & (cells[rows] < b - (b < h)))  # the core
                covered += list(rows)
            assert covered == list(range(H))


@torch.no_grad()
def test_window_query_equals_whole_query():
    """A query in its band's window gives what it gives on the whole feature map (the four
    LIIF neighbours lie inside the window): float rounding of the coordinate only."""
    torch.manual_seed(0)
    head = liif.LIIFHead(4, (16,))
    f = torch.randn(1, 4, 13, 9)
    H, W = 47, 30
    whole = np.empty((1, H * W, 3), np.float32)
    banded = np.empty_like(whole)
    cell = torch.from_numpy(coords.cells(H, W, 1))
    for _, start, stop, c, _ in tiled_sampling.queries(H, W, 13, 100, 97):
        whole[:, start:stop] = liif.query(head, f, torch.from_numpy(c)[None], cell.expand(1, stop - start, 2))
    for window, start, stop, c, s in tiled_sampling.queries(H, W, 13, 4, 97):
        banded[:, start:stop] = liif.query(head, f[:, :, window], torch.from_numpy(c)[None],
                                           torch.from_numpy(np.ascontiguousarray(s))[None])
    np.testing.assert_allclose(banded, whole, rtol=0, atol=2e-5)


def test_choose_defaults_and_overrides():
    costs = {"unet_step": {"macs_per_cell": 1e5, "attention": [{"stride": 4, "channels": 128}]},
             "decoder": {"macs_per_cell": 1e5, "attention": [{"stride": 1, "channels": 128}]}}
    assert lt.default_geometry(24, 4) == (96, 8)
    assert lt.default_geometry(8, 2) == (32, 4)
    assert not lt.choose(90, 60, 4, 24, costs, 20).tiled                    # fits one tile
    big = lt.choose(512, 384, 4, 24, costs, 20)
    assert big.tiled and (big.th, big.tw, big.overlap) == (96, 96, 8)
    # cheaper in one piece (1 x 97 .. 100 x 4: 2 tiles cost more convolution), and fits
    assert not lt.choose(100, 100, 4, 24, costs, 20).tiled
    assert lt.choose(100, 100, 4, 24, costs, 20, fits=lambda th, tw: th * tw <= 96 * 96).tiled
    # memory: the default tile shrinks by the alignment until one call fits, not below the
    # training latent; the overlap follows (8 %, rounded up to the alignment)
    seen = []
    small = lt.choose(512, 384, 4, 24, costs, 20, fits=lambda th, tw: seen.append((th, tw)) or th * tw <= 64 * 64)
    assert (small.th, small.tw, small.overlap) == (64, 64, 8) and seen[:2] == [(96, 96), (92, 92)]
    tiny = lt.choose(512, 384, 4, 24, costs, 20, fits=lambda th, tw: False)
    assert (tiny.th, tiny.overlap) == (24, 4)
    assert lt.default_overlap(24, 4) == 4 and lt.default_overlap(8, 4) == 4 and lt.default_overlap(4, 4) == 0
    forced = lt.choose(64, 64, 4, 24, costs, 20, tile=32)
    assert (forced.th, forced.overlap, forced.ys) == (32, 4, (0, 16, 32))   # span 32 in 2 gaps
    with pytest.raises(ValueError, match="multiple of 4"):
        lt.choose(64, 64, 4, 24, costs, 20, tile=30)
    with pytest.raises(ValueError, match=r"in 0..16"):
        lt.choose(64, 64, 4, 24, costs, 20, tile=32, overlap=20)


def test_graph_cost_formula():
    cost = {"macs_per_cell": 10.0, "attention": [{"stride": 2, "channels": 8}]}
    # 10 * 8 * 6 + 2 * (4 * 3)^2 * 8 = 480 + 2304
    assert lt.graph_cost(cost, 8, 6) == 480 + 2304


# -- the pipelines on tiles ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    # 37 x 45 LR (odd: padded to the U-Net multiple, latent cropped back); tiny trains on an
    # 8-cell latent, so forced 16-cell tiles make a 3 x 4 plan
    ramp = np.add.outer(np.arange(37) * 6.0, np.arange(45) * 2.0)[..., None] * np.array([1.0, 0.6, 0.3])
    return np.clip(ramp + np.random.RandomState(8).normal(0, 15, (37, 45, 3)), 0, 255).astype(np.uint8)


def test_tiled_runtime_matches_tiled_reference(sr, lr):
    model, pipe = sr
    p = pipe.plan(38, 46, 3, 1, latent_tile=16)
    assert (p.ys, p.xs, p.overlap) == ((0, 10, 22), (0, 10, 20, 30), 2)
    for scale, bp in ((2, 0), (3.7, 10)):
        ref = sampler.upscale(model, lr, scale=scale, steps=3, eta=1.0, seed=2, num_samples=2, backproject=bp,
                              latent_tile=16)
        out = pipe.upscale(lr, scale=scale, steps=3, eta=1.0, seed=2, num_samples=2, backproject=bp,
                           latent_tile=16)
        for r, o in zip(ref, out):
            assert psnr(r, o) >= 50, f"{scale}: {psnr(r, o):.1f} dB"
            assert r.std() > 2
    zr = sampler.upscale_latents(model, lr, steps=3, seed=5, latent_tile=16, latent_overlap=6)
    zo = pipe.upscale_latents(lr, steps=3, seed=5, latent_tile=16, latent_overlap=6)
    np.testing.assert_allclose(zo, zr, rtol=0, atol=1e-4)


def test_forced_small_tiles_where_untiled_fits(sr, lr):
    """The default samples this latent in one piece; forced tiles give a close, not equal,
    image (the U-Net sees less context) with no seam at the tile borders."""
    _, pipe = sr
    assert not pipe.plan(38, 46, 3).tiled
    [whole] = pipe.upscale(lr, scale=4, steps=3, eta=0.0, seed=1, backproject=0)
    [tiled] = pipe.upscale(lr, scale=4, steps=3, eta=0.0, seed=1, backproject=0, latent_tile=16)
    assert tiled.shape == whole.shape == (148, 180, 3)
    assert not np.array_equal(whole, tiled)
    assert psnr(whole, tiled) > 20


def test_same_result_for_any_tile_batching_and_thread_count(sr, lr, runtime_exports, monkeypatch):
    _, pipe = sr
    args = dict(scale=2, steps=3, eta=1.0, seed=4, num_samples=2, latent_tile=16)
    ref = pipe.upscale(lr, **args)
    monkeypatch.setattr(rt_pipeline, "TILE_BATCH_CELLS", 1)          # one tile per graph call
    one = pipe.upscale(lr, **args)
    monkeypatch.setattr(rt_pipeline, "TILE_BATCH_CELLS", 10 ** 9)    # every tile in one call
    every = pipe.upscale(lr, **args)
    threads = Pipeline.load(runtime_exports["sr"]["engines"], backend="cpu", threads=1)
    single = threads.upscale(lr, **args)
    for other in (one, every, single):
        for a, b in zip(ref, other):
            assert psnr(a, b) >= 50 and np.abs(a.astype(int) - b).max() <= 1


def test_tiled_generation_of_a_panorama(runtime_exports):
    model = load_model(runtime_exports["gen"]["ckpt"])
    pipe = Pipeline.load(runtime_exports["gen"]["engines"], backend="cpu")
    # a 16 x 48 latent (6 x the 8-cell training latent across) in forced 16-cell tiles:
    # span 32 in ceil(32 / 12) = 3 gaps, floor(k * 32 / 3) aligned to 2 -> 0, 10, 20, 32
    ref = sampler.generate(model, (96, 32), steps=2, seed=3, latent_size=(16, 48), latent_tile=16)
    out = pipe.generate((96, 32), steps=2, seed=3, latent_size=(16, 48), latent_tile=16)
    assert pipe.plan(16, 48, 2, latent_tile=16).xs == (0, 10, 20, 32)
    assert psnr(ref[0], out[0]) >= 50 and out[0].std() > 2


def test_large_input_is_not_refused(sr, monkeypatch):
    """512 x 384 was refused before tiling ("needs about 13.5 GiB for attention"): now its
    tiles' attention is bounded, and only the output and working arrays count."""
    _, pipe = sr
    p = pipe.plan(384, 512, 20)
    assert p.tiled and (p.th, p.tw) == (32, 32)
    monkeypatch.setenv("LDMIND_MEMORY_LIMIT", str(2 * 1024 ** 3))
    lr = np.random.RandomState(3).randint(0, 256, (384, 512, 3)).astype(np.uint8)
    [out] = pipe.upscale(lr, scale=1.5, steps=1, backproject=1)
    assert out.shape == (576, 768, 3) and out.std() > 2


def test_band_render_rows_are_seamless(sr, lr):
    """The render of a tiled latent has no step at band borders: the mean absolute vertical
    gradient on band-border rows is not above the mean elsewhere."""
    _, pipe = sr
    [out] = pipe.upscale(lr, scale=4, steps=3, eta=0.0, seed=1, backproject=0, latent_tile=16)
    g = np.abs(np.diff(out.astype(np.float64), axis=0)).mean(axis=(1, 2))   # row i -> i + 1
    H, h = out.shape[0], 37
    borders = {lt.band_rows(H, h, a, a + 16)[0] - 1 for a in range(16, h, 16)}
    ratio = g[sorted(borders)].mean() / np.delete(g, sorted(borders)).mean()
    assert ratio < 1.5, ratio
    assert math.isfinite(ratio)


def test_graph_bytes_by_hand():
    """limits.graph_bytes: the largest a c + b c^2 of any graph's measured terms, c = h w,
    times the batch and MEMORY_MARGIN (hand-computed)."""
    from ldmind_ref.core.contract import MEMORY_MARGIN
    from runtime.limits import graph_bytes

    costs = {"encoder": {"memory": [[120.0, 0.0]]}, "decoder": {"memory": [[100.0, 0.0], [50.0, 0.5]]}}
    assert graph_bytes(costs, 1, 10, 10) == int(MEMORY_MARGIN * 12000)       # encoder's 120 x 100
    assert graph_bytes(costs, 2, 20, 20) == int(MEMORY_MARGIN * 2 * (50 * 400 + 0.5 * 400 ** 2))


def test_default_tiles_shrink_to_the_memory_budget(sr, monkeypatch):
    """The runtime's own tiles keep one graph call within the working-memory budget: the
    largest aligned tile that fits, and no more tiles per call than fit."""
    from ldmind_ref.core.contract import HEADROOM
    from runtime.limits import graph_bytes

    _, pipe = sr
    costs = pipe.bundle.costs
    monkeypatch.setenv("LDMIND_MEMORY_LIMIT", str(HEADROOM + graph_bytes(costs, 1, 16, 16)))
    p = pipe.plan(64, 64, 2)
    assert p.tiled and (p.th, p.tw, p.overlap) == (16, 16, 2)
    assert pipe._tile_batch(p, 1) == 1
    monkeypatch.setenv("LDMIND_MEMORY_LIMIT", str(HEADROOM + 3 * graph_bytes(costs, 1, 16, 16)))
    assert pipe._tile_batch(pipe.plan(64, 64, 2, latent_tile=16), 1) == 3


def test_native_latent():
    # 128 px at 4 px per cell: 32 cells; rounded down to the alignment, never below it
    assert lt.native_latent(128, 4, 4) == 32
    assert lt.native_latent(100, 4, 4) == 24
    assert lt.native_latent(24, 4, 4) == 4
    assert lt.native_latent(8, 4, 4) == 4
