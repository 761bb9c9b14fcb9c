import numpy as np
import pytest
import torch

from ldmind_ref import diffusion as d, noise
from ldmind_ref.config import preset
from ldmind_ref.model import random_model
from ldmind_ref.sampler import sample_latents


def test_div2k_schedule_pinned():
    ab = d.alpha_bar_for(preset("div2k-sr").diffusion)
    assert ab.shape == (1000,) and ab.dtype == np.float64
    assert ab[0] == pytest.approx(0.9985, abs=1e-15)
    assert ab[-1] == pytest.approx(0.0006686651737398004, rel=1e-12)
    assert ab[499] == pytest.approx(0.1510774233475671, rel=1e-12)
    betas = d.make_betas("linear", 1000, 0.0015, 0.0155)
    assert betas[0] == pytest.approx(0.0015) and betas[-1] == pytest.approx(0.0155)
    # linear in sqrt(beta), not in beta
    assert np.allclose(np.diff(np.sqrt(betas)), np.diff(np.sqrt(betas))[0])


@pytest.mark.parametrize("schedule", d.SCHEDULES)
def test_schedules_are_valid(schedule):
    ab = d.alpha_bar_from_betas(d.make_betas(schedule, 1000, 1e-4, 0.02))
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < ab[0] < 1


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        d.make_betas("quadratic", 10)


def test_pred_z0_from_true_eps_recovers_z0():
    rng = np.random.default_rng(0)
    z0, eps = rng.standard_normal((2, 3, 8, 8))
    ab = d.alpha_bar_for(preset("div2k-sr").diffusion)
    for t in (0, 10, 500, 999):
        z_t = d.q_sample(z0, eps, ab[t])
        np.testing.assert_allclose(d.pred_z0(z_t, eps, ab[t]), z0, rtol=0, atol=1e-9)
    # the same function on torch tensors
    zt = torch.from_numpy(d.q_sample(z0, eps, ab[300]))
    torch.testing.assert_close(d.pred_z0(zt, torch.from_numpy(eps), ab[300]), torch.from_numpy(z0))


def test_ddim_timesteps():
    assert d.ddim_timesteps(1000, 3).tolist() == [1, 334, 667]
    ts = d.ddim_timesteps(1000, 200)
    assert len(ts) == 200 and ts[0] == 1 and ts[-1] == 996
    with pytest.raises(ValueError):
        d.ddim_timesteps(1000, 0)


def test_ddim_schedule_sigma():
    ab = d.alpha_bar_for(preset("div2k-sr").diffusion)
    s0 = d.ddim_schedule(ab, 50, 0.0)
    s1 = d.ddim_schedule(ab, 50, 1.0)
    assert [s.t for s in s0] == sorted((s.t for s in s0), reverse=True)
    assert all(s.sigma_t == 0 for s in s0)
    assert all(s.sigma_t > 0 for s in s1)
    assert s1[-1].alpha_bar_prev == ab[0]  # the last step lands on alpha_bar_0
    # eta = 1 is DDPM's posterior variance
    st = s1[10]
    ddpm = (1 - st.alpha_bar_prev) / (1 - st.alpha_bar_t) * (1 - st.alpha_bar_t / st.alpha_bar_prev)
    assert st.sigma_t == pytest.approx(np.sqrt(ddpm))


def test_ddim_step_identity_when_prediction_exact():
    """With the true eps and eta 0, a step lands exactly on q_sample at the previous alpha_bar."""
    rng = np.random.default_rng(1)
    z0, eps = rng.standard_normal((2, 4, 4))
    z_t = d.q_sample(z0, eps, 0.3)
    z_prev, pz0 = d.ddim_step(z_t, eps, 0.3, 0.7, 0.0, np.zeros_like(z0))
    np.testing.assert_allclose(pz0, z0, atol=1e-12)
    np.testing.assert_allclose(z_prev, d.q_sample(z0, eps, 0.7), atol=1e-12)


def test_ddim_eta0_is_deterministic():
    model = random_model(preset("tiny"), seed=3)
    cond = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)).numpy()

    def noise_fn(offset):
        # z_T fixed; every later stream differs between the two runs
        return lambda stream, shape: noise.batch_gaussian(0 if stream == 0 else offset, stream, 1, shape)

    a = sample_latents(model, cond, (3, 8, 8), 6, 0.0, noise_fn(11), 1)
    b = sample_latents(model, cond, (3, 8, 8), 6, 0.0, noise_fn(99), 1)
    assert np.array_equal(a, b)
    c = sample_latents(model, cond, (3, 8, 8), 6, 1.0, noise_fn(11), 1)
    e = sample_latents(model, cond, (3, 8, 8), 6, 1.0, noise_fn(99), 1)
    assert not np.array_equal(c, e)  # with eta 1 the step noise matters


def test_noise_contract_pinned_and_gaussian():
    # pinned values: a port of the contract (C++) must print exactly these
    assert noise.gaussian(0, 0, (4,)).tolist() == pytest.approx(
        [0.46343129873275757, 1.1470288038253784, 1.3444031476974487, 0.2656847834587097], abs=0)
    assert noise.gaussian(7, 3, (3,)).tolist() == pytest.approx(
        [-0.29541897773742676, -0.03134419396519661, 0.5230420231819153], abs=0)
    z = noise.gaussian(5, 1, (200_000,)).astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z ** 4) - 3) < 0.05  # kurtosis of a normal
    batch = noise.batch_gaussian(10, 2, 3, (2, 5))
    assert np.array_equal(batch[2], noise.gaussian(12, 2, (2, 5)))
    assert not np.array_equal(noise.gaussian(1, 0, (8,)), noise.gaussian(1, 1, (8,)))
