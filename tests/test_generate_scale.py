"""``generate`` samples a latent of the output's own scale (issue 20 item 7): an H x W image from
an (H/f) x (W/f) latent rounded down to the tile alignment, tiled when larger than the training
latent, so detail has the scale of the training photos; ``zoom`` keeps the old look (the
training latent stretched to the size)."""
from __future__ import annotations

import numpy as np

from ldmind_ref.core import latent_tiles
from runtime import Pipeline


def test_generation_latent_by_hand():
    # 256 px at f = 4: 64 cells; 30 px at f = 4 with alignment 8: 7 cells -> rounded down to 0 -> at least 8
    assert latent_tiles.native_latent(256, 4, 4) == 64
    assert latent_tiles.native_latent(30, 4, 8) == 8
    assert latent_tiles.native_latent(100, 4, 8) == 24            # 25 cells -> 24
    assert latent_tiles.generation_latent(256, 128, 4, 4, 24, False) == (64, 32)
    assert latent_tiles.generation_latent(256, 128, 4, 4, 24, True) == (24, 24)


def test_default_is_the_outputs_scale_and_zoom_the_training_latent(gen_engines):
    pipe = Pipeline.load(gen_engines, backend="cpu")
    b = pipe.bundle
    W, H = 72, 40
    native = latent_tiles.generation_latent(H, W, b.ae_downsample, b.tile_align, b.train_latent, False)
    assert native != tuple(b.generation_latent)
    kw = dict(steps=2, seed=3, num_samples=1)
    default, = pipe.generate((W, H), **kw)
    explicit, = pipe.generate((W, H), latent_size=native, **kw)
    np.testing.assert_array_equal(default, explicit)
    zoomed, = pipe.generate((W, H), zoom=True, **kw)
    old, = pipe.generate((W, H), latent_size=tuple(b.generation_latent), **kw)
    np.testing.assert_array_equal(zoomed, old)
    assert not np.array_equal(default, zoomed)
