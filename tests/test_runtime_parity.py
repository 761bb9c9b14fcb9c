"""Runtime vs the reference sampler on the same checkpoint and seed (issue 4).

The reference (``ldmind_ref.sampler``, PyTorch) and the runtime (ONNX Runtime on the graphs
``python -m export`` wrote from the same checkpoint) must agree to >= 50 dB PSNR: same LR
padding, schedule, noise streams, latent crop, query coordinates and rounding."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ldmind_ref import sampler
from ldmind_ref.checkpoint import load_model
from ldmind_ref.core import contract, noise as rng
from runtime import Pipeline
from runtime.errors import InputError

STEPS = 6


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def gen(runtime_exports):
    e = runtime_exports["gen"]
    return load_model(e["ckpt"]), Pipeline.load(e["engines"], backend="cpu")


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    # 11 x 13: odd sides, so the LR is padded (pad unit 2) and the latent cropped back
    rs = np.random.RandomState(5)
    y, x = np.mgrid[0:11, 0:13]
    smooth = np.stack([y * 20, x * 18, (x + y) * 10], -1)
    return np.clip(smooth + rs.randint(-30, 30, (11, 13, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_upscale_matches_reference(sr, lr, eta):
    model, pipe = sr
    for scale in (2, 3.7, 8):
        ref = sampler.upscale(model, lr, scale=scale, steps=STEPS, eta=eta, seed=11, num_samples=2)
        out = pipe.upscale(lr, scale=scale, steps=STEPS, eta=eta, seed=11, num_samples=2)
        assert len(out) == 2
        for r, o in zip(ref, out):
            assert o.shape == r.shape == (round(11 * scale + 1e-9), round(13 * scale + 1e-9), 3)
            assert psnr(r, o) >= 50, f"scale {scale}, eta {eta}: {psnr(r, o):.1f} dB"
            assert r.std() > 2, "degenerate output: the comparison would prove nothing"
        assert not np.array_equal(out[0], out[1]), "the two samples must use different seeds"


def test_upscale_to_size_and_pil_roundtrip(sr, lr):
    model, pipe = sr
    ref = sampler.upscale(model, lr, size=(40, 29), steps=STEPS, eta=1.0, seed=3)
    [out] = pipe.upscale(Image.fromarray(lr), size=(40, 29), steps=STEPS, eta=1.0, seed=3)
    assert isinstance(out, Image.Image) and out.size == (40, 29)      # PIL in -> PIL out
    assert psnr(ref[0], np.asarray(out)) >= 50


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_generate_matches_reference(gen, eta):
    model, pipe = gen
    for size in ((16, 16), (30, 37), (64, 64)):
        ref = sampler.generate(model, size, steps=STEPS, eta=eta, seed=7, num_samples=2)
        out = pipe.generate(size, steps=STEPS, eta=eta, seed=7, num_samples=2)
        for r, o in zip(ref, out):
            assert o.shape == r.shape == (size[1], size[0], 3)
            assert psnr(r, o) >= 50, f"size {size}, eta {eta}: {psnr(r, o):.1f} dB"
            assert r.std() > 2
        assert not np.array_equal(out[0], out[1])


def test_latents_and_render_match_reference(sr, lr):
    import torch

    model, pipe = sr
    zr = sampler.upscale_latents(model, lr, steps=STEPS, eta=1.0, seed=4, num_samples=2)
    zo = pipe.upscale_latents(lr, steps=STEPS, eta=1.0, seed=4, num_samples=2)
    assert zo.shape == tuple(zr.shape) == (2, 3, 11, 13)              # cropped to the LR area
    np.testing.assert_allclose(zo, zr, rtol=0, atol=1e-4)
    sizes = [(9, 7), (50, 61)]
    ref = sampler.render(model, torch.from_numpy(zo), sizes)
    out = pipe.render(zo, sizes)
    for r, o, (H, W) in zip(ref, out, sizes):
        assert o.shape == (2, H, W, 3)
        assert psnr(r, o) >= 50


def test_sample_j_is_seed_plus_j(sr, lr):
    """The RNG contract: a batch's sample j equals the single sample drawn with seed + j."""
    _, pipe = sr
    batch = pipe.upscale(lr, scale=2, steps=4, eta=1.0, seed=20, num_samples=3)
    for j in range(3):
        [single] = pipe.upscale(lr, scale=2, steps=4, eta=1.0, seed=20 + j)
        assert np.array_equal(single, batch[j])


def test_batches_split_for_small_profiles(sr, lr):
    """A backend with a batch limit (TensorRT profiles) runs several batches: same result."""
    _, pipe = sr
    whole = pipe.upscale(lr, scale=2, steps=4, eta=1.0, seed=9, num_samples=3)
    limited = Pipeline(pipe.bundle, pipe.engines, pipe.backend)
    limited.max_batch = 2
    split = limited.upscale(lr, scale=2, steps=4, eta=1.0, seed=9, num_samples=3)
    for a, b in zip(whole, split):
        assert psnr(a, b) >= 50


@pytest.mark.parametrize("fidelity", [None, 0.0, 0.5, 1.0])
def test_noise_streams_follow_contract(gen, fidelity):
    """eta = 0 draws no step noise: z_T alone determines the sample (stream 0, the contract's
    draw itself at every fidelity).  Unconditional, fidelity only ends the window early: at 4
    steps, 0.5 and 1.0 run 3 and return the third's pred_z0 (None: the default)."""
    _, pipe = gen
    b = pipe.bundle
    shape = (b.z_channels, *b.generation_latent)
    kw = {} if fidelity is None else {"fidelity": fidelity}
    ticks = []
    z0 = pipe.sample_latents(None, shape, steps=4, eta=0.0, seed=5, num_samples=1, sampler="ddim",
                             progress=lambda *e: ticks.append(e), **kw)
    # DDIM with eta 0 is deterministic given z_T: recompute by hand with the graphs
    from ldmind_ref.core import diffusion

    full = diffusion.ddim_schedule(b.alpha_bar, 4, 0.0)
    f = contract.DEFAULT_GENERATION_FIDELITY if fidelity is None else fidelity
    run = full[:3] if f in (0.5, 1.0) else full      # fidelity_window(4, F, False): (0, 1) for both
    assert ticks[-1][1:] == (len(run), len(run))
    z = rng.batch_gaussian(5, 0, 1, shape)
    for k, st in enumerate(run, start=1):
        out = pipe.engines["unet_step"]({
            "z_t": z, "timestep": np.array([st.t], np.int64), "alpha_bar_t": np.array([st.alpha_bar_t], np.float32),
            "alpha_bar_prev": np.array([st.alpha_bar_prev], np.float32), "sigma_t": np.array([0.0], np.float32),
            "noise": np.full_like(z, 123.0)})            # sigma 0: the noise input must not matter
        z = out["pred_z0"] if k == len(run) and run is not full else out["z_prev"]
    np.testing.assert_allclose(z0, z, rtol=0, atol=2e-6)


def test_backprojection_is_applied_after_the_raw_sample(sr, lr):
    """``backproject=0`` is the raw render of the sampled latent in both implementations;
    the default back-projects it, which brings its bicubic shrink closer to the input."""
    model, pipe = sr
    H, W = 2 * lr.shape[0], 2 * lr.shape[1]
    z = pipe.upscale_latents(lr, steps=STEPS, eta=1.0, seed=4)
    raw = pipe.render(z, [(H, W)])[0][0]
    [out0] = pipe.upscale(lr, scale=2, steps=STEPS, eta=1.0, seed=4, backproject=0)
    [ref0] = sampler.upscale(model, lr, scale=2, steps=STEPS, eta=1.0, seed=4, backproject=0)
    np.testing.assert_array_equal(out0, raw)
    assert psnr(ref0, raw) >= 50
    [out] = pipe.upscale(lr, scale=2, steps=STEPS, eta=1.0, seed=4)
    shrink = lambda a: np.asarray(Image.fromarray(a).resize((lr.shape[1], lr.shape[0]), Image.BICUBIC))  # noqa: E731
    err = lambda a: np.abs(shrink(a).astype(float) - lr).mean()  # noqa: E731
    assert not np.array_equal(out, raw)
    assert err(out) < 0.5 * err(raw), (err(out), err(raw))


# -- DPM-Solver++(2M) over the same graph (issue 11) ---------------------------------------------
def test_solver_matches_reference(sr, lr):
    """The solver in both implementations: latents and images, untiled and on forced tiles."""
    model, pipe = sr
    for tile in (None, 8):
        zr = sampler.upscale_latents(model, lr, steps=STEPS, seed=4, num_samples=2, latent_tile=tile,
                                     latent_overlap=None if tile is None else 2, sampler="dpm++2m")
        zo = pipe.upscale_latents(lr, steps=STEPS, seed=4, num_samples=2, latent_tile=tile,
                                  latent_overlap=None if tile is None else 2, sampler="dpm++2m")
        np.testing.assert_allclose(zo, zr, rtol=0, atol=1e-4)
    ref = sampler.upscale(model, lr, scale=3.7, steps=STEPS, seed=11, sampler="dpm++2m")
    out = pipe.upscale(lr, scale=3.7, steps=STEPS, seed=11, sampler="dpm++2m")
    assert psnr(ref[0], out[0]) >= 50 and ref[0].std() > 2
    ddim = pipe.upscale(lr, scale=3.7, steps=STEPS, seed=11, sampler="ddim")
    assert not np.array_equal(ddim[0], out[0])                          # the sampler really changed


def test_solver_loop_by_hand(gen):
    """The solver's sample = z_T, then per step the graph's pred_z0 and ``solver_update`` by
    hand (the graph's own z_prev unused): no step noise is drawn, eta is not used."""
    from ldmind_ref.core import diffusion

    _, pipe = gen
    b = pipe.bundle
    shape = (b.z_channels, *b.generation_latent)
    got = pipe.sample_latents(None, shape, steps=4, eta=1.0, seed=5, num_samples=1, sampler="dpm++2m",
                              fidelity=0.0)
    z, d_prev = rng.batch_gaussian(5, 0, 1, shape), None
    for st in diffusion.dpm_solver_schedule(b.alpha_bar, 4):
        d = pipe.engines["unet_step"]({
            "z_t": z, "timestep": np.array([st.t], np.int64), "alpha_bar_t": np.array([st.alpha_bar_t], np.float32),
            "alpha_bar_prev": np.array([0.5], np.float32), "sigma_t": np.array([0.0], np.float32),
            "noise": np.zeros_like(z)})["pred_z0"].astype(np.float64)
        z, d_prev = diffusion.solver_update(z.astype(np.float64), d, d_prev, st).astype(np.float32), d
    np.testing.assert_allclose(got, z, rtol=0, atol=1e-6)


# -- fidelity: the sampler's window (diffusion.fidelity_window; issue 20) ----------------------------
@pytest.mark.parametrize("kw", [dict(sampler="dpm++2m"), dict(sampler="ddim", eta=1.0)])
def test_fidelity_matches_reference(sr, lr, kw):
    """Fidelity 0.5 in both implementations: the noisiest step skipped (the start from the
    noised conditioning latent) and the exit on pred_z0."""
    model, pipe = sr
    zr = sampler.upscale_latents(model, lr, steps=STEPS, seed=4, num_samples=2, fidelity=0.5, **kw)
    zo = pipe.upscale_latents(lr, steps=STEPS, seed=4, num_samples=2, fidelity=0.5, **kw)
    np.testing.assert_allclose(zo, zr, rtol=0, atol=1e-4)
    assert not np.allclose(zo, pipe.upscale_latents(lr, steps=STEPS, seed=4, num_samples=2, fidelity=0.0, **kw),
                           atol=1e-3), "fidelity 0.5 must change the sample"


@pytest.mark.parametrize("kw", [dict(sampler="dpm++2m"), dict(sampler="ddim", eta=1.0)])
def test_fidelity_runs_fewer_steps_and_keeps_diversity(sr, gen, lr, kw):
    """At 4 steps fidelity 1 runs 1 step (upscale: window (2, 1)) and 3 (generation: (0, 1)),
    the progress says so, and different seeds still give different images (the start is the
    conditioning latent noised by the seed's draw)."""
    _, pipe = sr
    ticks = []
    a = pipe.upscale(lr, scale=2, steps=4, seed=1, num_samples=2, fidelity=1.0,
                     progress=lambda *e: ticks.append(e), **kw)
    assert [e for e in ticks if e[0] == contract.STAGE_DENOISE][-1][1:] == (1, 1)
    assert not np.array_equal(a[0], a[1]) and a[0].std() > 2
    ticks.clear()
    gen[1].generate((16, 16), steps=4, seed=3, num_samples=2, fidelity=1.0, progress=lambda *e: ticks.append(e),
                    **kw)
    assert [e for e in ticks if e[0] == contract.STAGE_DENOISE][-1][1:] == (3, 3)


def test_sample_latents_default_fidelity_is_the_tasks(sr, gen):
    """``sample_latents`` without a fidelity takes the task's default (``noise.default_fidelity``):
    generation's without ``cond``, upscale's with it, in the runtime and the reference.  At 8
    steps the two defaults open different windows, so a mix-up changes the latents."""
    from ldmind_ref.core import diffusion

    assert diffusion.fidelity_window(8, contract.DEFAULT_FIDELITY, False) != \
        diffusion.fidelity_window(8, contract.DEFAULT_GENERATION_FIDELITY, False)
    model, pipe = gen
    b = pipe.bundle
    shape = (b.z_channels, *b.generation_latent)
    kw = dict(steps=8, eta=0.0, seed=2, num_samples=1, sampler="ddim")
    z = pipe.sample_latents(None, shape, **kw)
    np.testing.assert_array_equal(z, pipe.sample_latents(None, shape, fidelity=contract.DEFAULT_GENERATION_FIDELITY,
                                                         **kw))
    assert not np.allclose(z, pipe.sample_latents(None, shape, fidelity=contract.DEFAULT_FIDELITY, **kw), atol=1e-4)
    noise = sampler.contract_noise(2, 1)
    zr = sampler.sample_latents(model, None, shape, 8, 0.0, noise, 1, sampler="ddim")
    np.testing.assert_array_equal(zr, sampler.sample_latents(model, None, shape, 8, 0.0, noise, 1, sampler="ddim",
                                                             fidelity=contract.DEFAULT_GENERATION_FIDELITY))
    srm, srp = sr
    cond = np.random.default_rng(0).standard_normal((1, srp.bundle.z_channels, 8, 8)).astype(np.float32)
    zc = srp.sample_latents(cond, cond.shape[1:], **kw)
    np.testing.assert_array_equal(zc, srp.sample_latents(cond, cond.shape[1:], fidelity=contract.DEFAULT_FIDELITY,
                                                         **kw))


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), True, "0.5"])
def test_fidelity_refused_before_any_work(sr, gen, lr, bad):
    model, pipe = sr
    events = []
    message = f"fidelity must be a number in 0..1, got {bad}"
    for call in (lambda: pipe.upscale(lr, scale=2, fidelity=bad, progress=lambda *e: events.append(e)),
                 lambda: pipe.upscale_latents(lr, fidelity=bad, progress=lambda *e: events.append(e)),
                 lambda: gen[1].generate((16, 16), fidelity=bad, progress=lambda *e: events.append(e))):
        with pytest.raises(InputError) as e:
            call()
        assert str(e.value) == message
    assert events == []
    with pytest.raises(ValueError, match="fidelity must be a number in 0..1"):
        sampler.upscale(model, lr, scale=2, steps=1, fidelity=bad)
