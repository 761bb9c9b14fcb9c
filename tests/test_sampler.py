import numpy as np
import pytest
import torch

from ldmind_ref import sampler
from ldmind_ref.config import preset
from ldmind_ref.core import consistency, noise
from ldmind_ref.model import random_model


@pytest.fixture(scope="module")
def tiny():
    return random_model(preset("tiny"), seed=1)


@pytest.fixture(scope="module")
def lr():
    return (np.random.default_rng(0).random((13, 17, 3)) * 255).astype(np.uint8)


def _smooth_lr():
    from PIL import Image

    base = np.random.default_rng(0).uniform(60, 190, (4, 4, 3)).astype(np.float32)
    up = [np.asarray(Image.fromarray(base[..., c], "F").resize((17, 13), Image.BICUBIC)) for c in range(3)]
    return np.clip(np.stack(up, -1), 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("scale,size", [(1.5, (20, 26)), (2, (26, 34)), (3.7, (48, 63)), (8, (104, 136))])
def test_upscale_output_size(tiny, scale, size):
    """Sizes hand-computed (floor(s * n + 0.5) of 13 x 17), and values: the output shrinks
    back (PIL bicubic) onto the LR -- a wrong size, orientation or garbage would not."""
    from PIL import Image

    lr = _smooth_lr()
    (out,) = sampler.upscale(tiny, lr, scale=scale, steps=3, seed=0)
    assert out.dtype == np.uint8 and out.shape == (*size, 3)
    shrunk = np.asarray(Image.fromarray(out).resize((17, 13), Image.BICUBIC)).astype(int)
    assert np.abs(shrunk - lr).mean() < 0.5
    (raw,) = sampler.upscale(tiny, lr, scale=scale, steps=3, seed=0, backproject=0)
    assert np.abs(np.asarray(Image.fromarray(raw).resize((17, 13), Image.BICUBIC)).astype(int) - lr).mean() > 5


def test_steps_equal_T_and_paper_schedule(tiny):
    """steps = T runs (it indexed alpha_bar[T]; T = 40 here for speed); the paper schedule runs N - 1 steps,
    drawing one noise stream fewer."""
    calls = []

    def fn(stream, shape):
        calls.append(stream)
        return noise.batch_gaussian(0, stream, 1, shape)

    import dataclasses

    cfg = preset("tiny")
    short = random_model(dataclasses.replace(cfg, diffusion=dataclasses.replace(cfg.diffusion, timesteps=40)), 1)
    cond = np.zeros((1, 3, 4, 4), np.float32)
    z = sampler.sample_latents(short, cond, (3, 4, 4), 40, 1.0, fn, 1, sampler="ddim", fidelity=0.0)   # steps = T
    assert np.isfinite(z).all() and calls[0] == 0
    # the last step (t = 0 onto alpha_bar_0) has sigma 0: 39 noise streams after z_T
    assert calls[1:] == list(range(1, 40))
    calls.clear()
    sampler.sample_latents(tiny, cond, (3, 4, 4), 5, 1.0, fn, 1, schedule="paper", sampler="ddim", fidelity=0.0)
    assert calls == [0, 1, 2, 3, 4]


def test_upscale_to_size_non_square(tiny, lr):
    (out,) = sampler.upscale(tiny, lr, size=(45, 29), steps=2)
    assert out.shape == (29, 45, 3)


def test_seeds(tiny, lr):
    a = sampler.upscale(tiny, lr, scale=2, steps=4, eta=1.0, seed=0)[0]
    b = sampler.upscale(tiny, lr, scale=2, steps=4, eta=1.0, seed=0)[0]
    c = sampler.upscale(tiny, lr, scale=2, steps=4, eta=1.0, seed=1)[0]
    assert np.array_equal(a, b)
    assert np.mean(a != c) > 0.1
    # sample j of a batch is the single sample drawn with seed + j
    pair = sampler.upscale(tiny, lr, scale=2, steps=4, eta=1.0, seed=0, num_samples=2)
    assert np.array_equal(pair[0], a) and np.array_equal(pair[1], c)


def test_injected_noise_reproduces_sample(tiny, lr):
    from ldmind_ref.core import noise

    calls = []

    def fn(stream, shape):
        calls.append((stream, tuple(shape)))
        return noise.batch_gaussian(5, stream, 1, shape)

    a = sampler.upscale(tiny, lr, scale=2, steps=3, eta=1.0, noise=fn, sampler="ddim")[0]
    b = sampler.upscale(tiny, lr, scale=2, steps=3, eta=1.0, seed=5, sampler="ddim")[0]
    assert np.array_equal(a, b)
    # LR 13x17 is padded to the U-Net multiple (2) -> latent 14x18; z_T then one stream per step
    assert calls == [(0, (3, 14, 18)), (1, (3, 14, 18)), (2, (3, 14, 18)), (3, (3, 14, 18))]


def test_render_several_sizes_from_one_latent(tiny, lr):
    z = sampler.upscale_latents(tiny, lr, steps=2, seed=0)
    assert z.shape == (1, 3, 13, 17)  # cropped back to the LR area
    small, big = sampler.render(tiny, z, [(26, 34), (104, 136)])
    assert small.shape == (1, 26, 34, 3) and big.shape == (1, 104, 136, 3)
    direct = sampler.upscale(tiny, lr, scale=2, steps=2, seed=0, backproject=0)[0]
    assert np.array_equal(small[0], direct)
    # the default back-projects that same render onto the LR
    projected = sampler.upscale(tiny, lr, scale=2, steps=2, seed=0)[0]
    assert np.array_equal(projected, consistency.apply_inplace(small[0].copy(), lr))


def test_generate():
    model = random_model(preset("tiny-gen"), seed=2)
    outs = sampler.generate(model, size=(40, 24), steps=3, seed=0, num_samples=2)
    assert len(outs) == 2 and outs[0].shape == (24, 40, 3)
    assert not np.array_equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="conditional"):
        sampler.generate(random_model(preset("tiny")), size=(8, 8))
    with pytest.raises(ValueError, match="unconditional"):
        sampler.upscale(model, np.zeros((8, 8, 3), np.uint8), scale=2)


def test_bad_scale(tiny, lr):
    for s in (0, -2, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            sampler.upscale(tiny, lr, scale=s)


def test_pil_input(tiny, lr):
    from PIL import Image

    a = sampler.upscale(tiny, Image.fromarray(lr), scale=2, steps=2)[0]
    b = sampler.upscale(tiny, lr, scale=2, steps=2)[0]
    assert np.array_equal(a, b)


@pytest.mark.parametrize("which, fidelity", [("ddim", 0.0), ("ddim", 0.5), ("dpm++2m", 0.25), ("dpm++2m", 1.0)])
def test_sample_batch_is_the_reference_sampler_per_image(tiny, which, fidelity):
    # the training stage's batched sampler draws, for every image of the batch, what the
    # reference sampler draws for that image alone from the same noise streams
    g = torch.Generator().manual_seed(3)
    cond = torch.randn(3, 3, 8, 12, generator=g)
    streams = torch.randn(9, 3, 3, 8, 12, generator=g)
    got = sampler.sample_batch(tiny, cond, streams, steps=8, sampler=which, eta=1.0, fidelity=fidelity).numpy()
    for i in range(3):
        one = sampler.sample_latents(tiny, cond[i:i + 1].numpy(), (3, 8, 12), 8, 1.0,
                                     lambda stream, shape: streams[stream, i:i + 1].numpy(), 1,
                                     sampler=which, fidelity=fidelity)
        np.testing.assert_allclose(got[i:i + 1], one, rtol=0, atol=2e-5)
    assert not np.allclose(got[0], got[1])
