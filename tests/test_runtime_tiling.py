"""Tiled LIIF rendering: exact coordinates per tile, tile-size invariance, bounded memory."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from ldmind_ref.core import coords, noise
from runtime import Pipeline
from runtime.tiling import render_into, rgb_to_pixels
from ldmind_ref.core import images


@pytest.mark.parametrize("H,W", [(1, 1), (1, 7), (7, 1), (5, 9), (37, 23)])
def test_flat_coords_are_the_grid_slices(H, W):
    full = coords.grid_coords(H, W)
    rs = np.random.RandomState(H * 100 + W)
    ranges = [(0, H * W)] + [tuple(sorted(rs.randint(0, H * W + 1, 2))) for _ in range(20)]
    for a, b in ranges:
        np.testing.assert_array_equal(coords.flat_coords(H, W, a, b), full[a:b])   # bit-identical


def test_rgb_to_uint8_is_the_reference_rounding():
    rs = np.random.RandomState(0)
    rgb = rs.uniform(-1.2, 1.2, (2, 50, 3)).astype(np.float32)
    rgb[0, :4, 0] = [-1.0, 1.0, 0.00392157, -0.0039215]
    ref = images.to_uint8(rgb.transpose(0, 2, 1).reshape(2, 3, 5, 10)).reshape(2, 50, 3)
    np.testing.assert_array_equal(rgb_to_pixels(rgb), ref)


@pytest.fixture(scope="module")
def pipe(runtime_exports):
    return Pipeline.load(runtime_exports["sr"]["engines"], backend="cpu")


def test_tile_size_does_not_change_the_image(pipe):
    z = noise.gaussian(3, 0, (2, pipe.bundle.z_channels, 9, 11))
    H, W = 211, 197                      # 41,567 pixels: 41 tiles of 1,024, one of 65,536
    outs = [pipe.render(z, [(H, W)], tile=t)[0] for t in (1024, 4096, 65536, 1000)]
    for o in outs[1:]:
        assert o.shape == (2, H, W, 3)
        assert np.abs(o.astype(np.int16) - outs[0]).max() <= 1
    assert outs[0].std() > 2


def test_tile_of_one_pixel(pipe):
    z = noise.gaussian(4, 0, (1, pipe.bundle.z_channels, 4, 6))
    a = pipe.render(z, [(5, 7)], tile=1)[0]
    b = pipe.render(z, [(5, 7)], tile=35)[0]
    assert np.abs(a.astype(np.int16) - b).max() <= 1


def test_no_float_array_of_the_output_size(pipe):
    """Peak Python/numpy allocation while rendering 512 x 512 with 1,024-query tiles stays
    near the uint8 output: a float32 coordinate grid of the whole image alone would be
    2 MiB, the float RGB 3 MiB."""
    z = noise.gaussian(5, 0, (1, pipe.bundle.z_channels, 8, 8))
    pipe.render(z, [(16, 16)], tile=1024)            # warm-up outside the measurement
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        [out] = pipe.render(z, [(512, 512)], tile=1024)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert out.nbytes == 512 * 512 * 3
    assert peak < out.nbytes + 512 * 1024, f"peak {peak} bytes for a {out.nbytes}-byte output"


def test_render_into_reports_nan_position():
    out = np.zeros((1, 3, 4, 3), np.uint8)

    def query(window, c, s):
        r = np.zeros(c.shape[:2] + (3,), np.float32)
        if c.shape[1] and np.isclose(c[0, :, 0], coords.pixel_centres(3)[1]).any():
            r[0, np.argmax(np.isclose(c[0, :, 0], coords.pixel_centres(3)[1])), 1] = np.nan
        return r

    from runtime.errors import NumericalError
    with pytest.raises(NumericalError, match=r"x=0, y=1"):
        render_into(out, query, h=2, band=2, tile=5)


def test_output_check_multiplies_by_the_sample_count(monkeypatch):
    """limits.check_output: N x H x W x 3 bytes + HEADROOM against the limit (hand-computed)."""
    from runtime.errors import InputError
    from ldmind_ref.core.contract import HEADROOM
    from runtime.limits import check_output

    monkeypatch.setenv("LDMIND_MEMORY_LIMIT", str(HEADROOM + 3 * 100 * 200 * 3))
    check_output(1, 100, 200)
    check_output(3, 100, 200)                       # exactly at the limit
    with pytest.raises(InputError, match="4 images of 200x100 output"):
        check_output(4, 100, 200)
    with pytest.raises(InputError, match="a 600x301 output needs"):
        check_output(1, 301, 600)


def test_default_tile_is_the_backends_preference(pipe):
    """ONNX Runtime on the CPU queries at most CPU_QUERY_TILE pixels per call (faster there);
    a backend without a preference, or an explicit tile, keeps its own."""
    import dataclasses

    from runtime.backends.onnxruntime import CPU_QUERY_TILE

    assert pipe.tile == min(pipe.bundle.query_chunk, CPU_QUERY_TILE)
    b = dataclasses.replace(pipe.bundle, query_chunk=65536)     # small's and div2k-sr's
    assert Pipeline(b, pipe.engines, "cpu").tile == CPU_QUERY_TILE
    assert Pipeline(dataclasses.replace(b, query_chunk=100), pipe.engines, "cpu").tile == 100
    assert Pipeline(b, pipe.engines, "cpu", tile=3000).tile == 3000
    engines = dict(pipe.engines)

    class NoPreference:
        query_tile = max_batch = None
    engines["liif"] = NoPreference()
    assert Pipeline(b, engines, "cpu").tile == b.query_chunk
