import numpy as np
import pytest
import torch

from ldmind_ref.config import preset
from ldmind_ref.core import diffusion as d, noise
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

    a = sample_latents(model, cond, (3, 8, 8), 6, 0.0, noise_fn(11), 1, sampler="ddim")
    b = sample_latents(model, cond, (3, 8, 8), 6, 0.0, noise_fn(99), 1, sampler="ddim")
    assert np.array_equal(a, b)
    c = sample_latents(model, cond, (3, 8, 8), 6, 1.0, noise_fn(11), 1, sampler="ddim")
    e = sample_latents(model, cond, (3, 8, 8), 6, 1.0, noise_fn(99), 1, sampler="ddim")
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


# -- issue 10: the steps = T edge, the paper's schedule, impossible eta, ddim_step with noise ----
def test_ddim_timesteps_at_and_below_T_hand_computed():
    # steps = T: the shifted grid 1..T would index alpha_bar[T]; clipped, it visits 0..T-1
    assert d.ddim_timesteps(1000, 1000).tolist() == list(range(1000))
    assert d.ddim_timesteps(10, 10).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    # every N < T keeps the grid 1, 1 + c, ... (c = T // N): results stay what they were
    assert d.ddim_timesteps(1000, 999).tolist() == list(range(1, 1000))
    assert d.ddim_timesteps(10, 9).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert d.ddim_timesteps(10, 4).tolist() == [1, 3, 5, 7]
    assert d.ddim_timesteps(10, 3).tolist() == [1, 4, 7]
    assert d.ddim_timesteps(1000, 500).tolist()[-2:] == [997, 999]
    assert d.ddim_timesteps(1000, 50).tolist()[:3] == [1, 21, 41] and d.ddim_timesteps(1000, 50)[-1] == 981
    assert d.ddim_timesteps(1, 1).tolist() == [0]
    for n in (1, 2, 3, 7, 333, 501, 999, 1000):
        ts = d.ddim_timesteps(1000, n)
        assert len(ts) == n and len(set(ts.tolist())) == n and ts.max() <= 999 and ts.min() >= 0


def test_ddim_schedule_steps_equal_T_runs():
    ab = d.alpha_bar_for(preset("div2k-sr").diffusion)
    s = d.ddim_schedule(ab, 1000, 1.0)
    assert [st.t for st in s] == list(range(999, -1, -1))
    assert all(np.isfinite(st.sigma_t) for st in s)
    # the last step starts at t = 0 and lands on alpha_bar_0: sigma 0, a no-op on z
    assert s[-1].t == 0 and s[-1].alpha_bar_prev == ab[0] and s[-1].sigma_t == 0.0
    assert s[0].alpha_bar_t == ab[999] and s[0].alpha_bar_prev == ab[998]


def test_paper_schedule_drops_the_noisiest_step():
    """The paper's DDIM sample() runs ddim_timesteps[:-1] (t_start=-1): 50 -> 49 steps from
    t = 961, 10 -> 9 from t = 801, with the full schedule's coefficients."""
    ab = d.alpha_bar_for(preset("div2k-sr").diffusion)
    full = d.ddim_schedule(ab, 50, 1.0)
    paper = d.ddim_schedule(ab, 50, 1.0, "paper")
    assert len(full) == 50 and full[0].t == 981
    assert len(paper) == 49 and paper[0].t == 961 and paper[-1].t == 1
    assert paper == full[1:]
    assert paper[0].alpha_bar_prev == ab[941]
    p10 = d.ddim_schedule(ab, 10, 0.0, "paper")
    assert [st.t for st in p10] == [801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert d.ddim_executed_timesteps(1000, 10, "full").tolist()[-1] == 901
    with pytest.raises(ValueError, match="paper schedule"):
        d.ddim_schedule(ab, 1, 1.0, "paper")
    with pytest.raises(ValueError, match="schedule must be one of"):
        d.ddim_schedule(ab, 10, 1.0, "fast")


def test_impossible_eta_refused_by_the_schedule():
    """sigma_t^2 > 1 - alpha_bar_prev makes the direction term the square root of a negative
    number; such an eta is refused with the largest one that works."""
    ab = d.alpha_bar_for(preset("div2k-sr").diffusion)
    with pytest.raises(ValueError, match=r"eta 100 is too large .* allows eta up to 1\.046"):
        d.ddim_schedule(ab, 50, 100.0)
    # up to eta = 1 every schedule works (sigma^2 <= 1 - ab_prev algebraically)
    for n in (1, 2, 10, 50, 999, 1000):
        for st in d.ddim_schedule(ab, n, 1.0):
            assert 1 - st.alpha_bar_prev - st.sigma_t ** 2 >= -1e-12
    d.ddim_schedule(ab, 50, 1.04)  # below the bound: accepted


def test_ddim_step_with_noise_hand_computed():
    """z_prev = sqrt(ab_prev) z0 + sqrt(1 - ab_prev - sigma^2) eps + sigma noise, by hand:
    z_t 0.5, eps 0.2, ab_t 0.25, ab_prev 0.64, sigma 0.3, noise -1.5:
    z0 = (0.5 - sqrt(0.75) * 0.2) / 0.5 = 0.65358983848622454
    z_prev = 0.8 z0 + sqrt(0.27) * 0.2 - 0.45 = 0.52287187078897963 + 0.10392304845413264 - 0.45."""
    z_prev, z0 = d.ddim_step(np.array([0.5]), np.array([0.2]), 0.25, 0.64, 0.3, np.array([-1.5]))
    assert z0[0] == pytest.approx(0.65358983848622454, abs=1e-15)
    assert z_prev[0] == pytest.approx(0.17679491924311227, abs=1e-15)
    # sigma enters both the direction term and the noise term: another sigma, another value
    z2, _ = d.ddim_step(np.array([0.5]), np.array([0.2]), 0.25, 0.64, 0.5, np.array([-1.5]))
    # 0.8 z0 + sqrt(0.11) * 0.2 - 0.75
    assert z2[0] == pytest.approx(0.52287187078897963 + 0.066332495807107997 - 0.75, abs=1e-15)


# -- DPM-Solver++(2M) (issue 11) -----------------------------------------------------------------
def _solve(schedule, model, z):
    """Run a SolverStep schedule with an eps-model ``model(z, t)``; D = pred_z0."""
    d_prev = None
    for st in schedule:
        x0 = d.pred_z0(z, model(z, st.t), st.alpha_bar_t)
        z, d_prev = d.solver_update(z, x0, d_prev, st), x0
    return z


@pytest.mark.parametrize("steps, expected", [
    # diffusers 0.42.1, DPMSolverMultistepScheduler(trained_betas=make_betas("linear", 1000, 0.0015,
    # 0.0195), algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="sigma_min",
    # lower_order_final=True, prediction_type="epsilon"), set_timesteps(timesteps=our DDIM grid),
    # eps(x, t) = 0.3 x + 0.1 sin(t / 97), x_T = (1, -0.5, 0.25); run 2026-11-30 in a separate venv
    (5, [4.834625908002151, -3.0907851259140453, 0.8719202303087469]),
    (10, [9.282266348029093, -5.495451559154461, 1.893407752806854]),
    (20, [12.892305196982887, -7.161233364214112, 2.865533637686519]),
])
def test_dpm_solver_matches_diffusers(steps, expected):
    """Another library's numbers: the same solver in diffusers (which keeps alpha_bar in
    float32, hence agreement to ~1e-7 relative, not to float64 rounding)."""
    ab = d.alpha_bar_from_betas(d.make_betas("linear", 1000, 0.0015, 0.0195))
    z = _solve(d.dpm_solver_schedule(ab, steps), lambda z, t: 0.3 * z + 0.1 * np.sin(t / 97.0),
               np.array([1.0, -0.5, 0.25]))
    np.testing.assert_allclose(z, expected, rtol=1e-6)


def test_dpm_solver_first_order_is_ddim_eta_zero():
    """The first step (and every step's first-order part) is DDIM with eta = 0, written from
    DDIM's own formula (``ddim_step``): same landing points, same numbers."""
    ab = d.alpha_bar_from_betas(d.make_betas("linear", 1000, 0.0015, 0.0195))
    solver = d.dpm_solver_schedule(ab, 10)
    ddim = d.ddim_schedule(ab, 10, 0.0)
    assert [s.t for s in solver] == [s.t for s in ddim] == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    rng = np.random.default_rng(0)
    z, eps = rng.standard_normal(5), rng.standard_normal(5)
    for s, dd in zip(solver, ddim):
        z_prev, z0 = d.ddim_step(z, eps, dd.alpha_bar_t, dd.alpha_bar_prev, 0.0, 0.0)
        first = d.SolverStep(s.t, s.alpha_bar_t, s.c_x, s.c_d + s.c_d_prev, 0.0)
        np.testing.assert_allclose(d.solver_update(z, z0, None, first), z_prev, rtol=1e-12, atol=1e-12)
    assert solver[0].c_d_prev == 0 and solver[-1].c_d_prev == 0           # first step; last below 15 steps
    assert all(s.c_d_prev < 0 for s in solver[1:-1])
    assert d.dpm_solver_schedule(ab, 20)[-1].c_d_prev < 0          # 15 steps and more: second order


def test_dpm_solver_is_second_order():
    """Against the exact solution of the data-prediction ODE (DPM-Solver++ eq. 9) when
    D(lambda) = cos(lambda): z_s = (sigma_s / sigma_t) z_t + sigma_s [F(lambda_s) - F(lambda_t)],
    F = e^l (cos l + sin l) / 2.  On a schedule uniform in lambda, doubling the steps divides
    the error by ~4 (first order: by ~2)."""
    T = 1000
    lam = 3 - 6 * np.arange(T) / (T - 1)
    ab = 1 / (1 + np.exp(-2 * lam))
    F = lambda x: np.exp(x) * (np.cos(x) + np.sin(x)) / 2     # noqa: E731
    errors, first = [], []
    for n in (40, 80, 160):
        sch = d.dpm_solver_schedule(ab, n)
        t0 = sch[0].t
        l_t, l_s = d.log_snr(ab[t0]), d.log_snr(ab[0])
        exact = np.sqrt((1 - ab[0]) / (1 - ab[t0])) * 0.7 + np.sqrt(1 - ab[0]) * (F(l_s) - F(l_t))
        z, z1, d_prev = 0.7, 0.7, None
        for st in sch:
            x0 = np.cos(d.log_snr(st.alpha_bar_t))
            z, d_prev = d.solver_update(z, x0, d_prev, st), x0
            z1 = st.c_x * z1 + (st.c_d + st.c_d_prev) * x0
        errors.append(abs(z - exact))
        first.append(abs(z1 - exact))
    for a, b in zip(errors, errors[1:]):
        assert 3.3 < a / b < 4.7, errors
    for a, b in zip(first, first[1:]):
        assert 1.8 < a / b < 2.3, first


def test_sampling_schedule_names():
    ab = d.alpha_bar_from_betas(d.make_betas("linear", 100))
    assert isinstance(d.sampling_schedule(ab, 4, 1.0, sampler="ddim")[0], d.DDIMStep)
    assert isinstance(d.sampling_schedule(ab, 4, 1.0, sampler="dpm++2m")[0], d.SolverStep)
    with pytest.raises(ValueError, match="sampler must be one of ddim, dpm\\+\\+2m"):
        d.sampling_schedule(ab, 4, 1.0, sampler="euler")
    with pytest.raises(ValueError, match="steps must be in 1..100"):
        d.sampling_schedule(ab, 0, 1.0, sampler="dpm++2m")


def test_dpm_solver_with_steps_equal_T():
    """steps = T visits t = 0, whose step lands where it starts: an identity, no division by zero."""
    import warnings

    ab = d.alpha_bar_from_betas(d.make_betas("linear", 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sch = d.dpm_solver_schedule(ab, 40)
    assert (sch[-1].t, sch[-1].c_x, sch[-1].c_d, sch[-1].c_d_prev) == (0, 1.0, 0.0, 0.0)
    assert all(np.isfinite([s.c_x, s.c_d, s.c_d_prev]).all() for s in sch)


# -- fidelity's window ----------------------------------------------------------------------
@pytest.mark.parametrize("n, fidelity, conditional, expected", [
    # skip = round half up(F n / 2) (conditional only), stop = round half up(F n / 4), >= 1 step left
    (8, 0.0, True, (0, 0)), (8, 0.25, True, (1, 1)), (8, 0.5, True, (2, 1)), (8, 0.75, True, (3, 2)),
    (8, 1.0, True, (4, 2)), (10, 0.5, True, (3, 1)), (10, 1.0, True, (5, 3)), (8, 1.0, False, (0, 2)),
    (8, 0.5, False, (0, 1)), (1, 1.0, True, (0, 0)), (2, 1.0, True, (1, 0)), (3, 0.75, True, (1, 1)),
])
def test_fidelity_window_hand_computed(n, fidelity, conditional, expected):
    assert d.fidelity_window(n, fidelity, conditional) == expected


def test_fidelity_window_dpm_solver_hand_computed():
    """At n = 8, F = 0.5 the solver runs t = 626 .. 126: its first step first order from the
    noised conditioning latent, its last returns D (the exit).  Coefficients from the
    DPM-Solver++ formulas written out here, not from the full schedule."""
    ab = d.alpha_bar_from_betas(d.make_betas("linear", 1000, 0.0015, 0.0195))
    sch = d.sampling_schedule(ab, 8, 1.0, sampler="dpm++2m", fidelity=0.5, conditional=True)
    assert [s.t for s in sch] == [626, 501, 376, 251, 126]
    assert [s.from_cond for s in sch] == [True, False, False, False, False]
    lam = lambda t: 0.5 * np.log(ab[t] / (1 - ab[t]))               # noqa: E731
    h = lam(501) - lam(626)
    assert sch[0].c_x == pytest.approx(np.sqrt((1 - ab[501]) / (1 - ab[626])), rel=1e-12)
    assert sch[0].c_d == pytest.approx(np.sqrt(ab[501]) * (1 - np.exp(-h)), rel=1e-12) and sch[0].c_d_prev == 0
    r = h / (lam(376) - lam(501))                                 # second order from the second step
    assert sch[1].c_d_prev == pytest.approx(-np.sqrt(ab[376]) * (1 - np.exp(-(lam(376) - lam(501)))) / (2 * r),
                                            rel=1e-12)
    assert (sch[-1].c_x, sch[-1].c_d, sch[-1].c_d_prev) == (0.0, 1.0, 0.0)
    z, D = np.array([0.3, -1.2]), np.array([0.7, 0.1])
    np.testing.assert_array_equal(d.solver_update(z, D, None, sch[-1]), D)     # the exit returns D_i itself


def test_fidelity_window_ddim_exit_returns_pred_z0():
    ab = d.alpha_bar_from_betas(d.make_betas("linear", 1000, 0.0015, 0.0195))
    full = d.ddim_schedule(ab, 8, 1.0)
    sch = d.sampling_schedule(ab, 8, 1.0, sampler="ddim", fidelity=1.0, conditional=True)
    assert [s.t for s in sch] == [376, 251]                          # skip 4, stop 2
    assert sch[0] == d.DDIMStep(full[4].t, full[4].alpha_bar_t, full[4].alpha_bar_prev, full[4].sigma_t, True)
    assert (sch[1].alpha_bar_prev, sch[1].sigma_t) == (1.0, 0.0)
    z, eps = np.array([0.4, -0.9]), np.array([1.1, 0.2])
    z_prev, z0 = d.ddim_step(z, eps, sch[1].alpha_bar_t, sch[1].alpha_bar_prev, sch[1].sigma_t, np.array([5.0, 5.0]))
    np.testing.assert_array_equal(z_prev, z0)
    np.testing.assert_allclose(z0, (z - np.sqrt(1 - ab[251]) * eps) / np.sqrt(ab[251]), rtol=1e-12)
    # fidelity 0 is the paper's sampler, unchanged
    assert d.sampling_schedule(ab, 8, 1.0, sampler="ddim", fidelity=0.0, conditional=True) == full


def test_initial_latent_hand_computed():
    st = d.SolverStep(376, 0.31, 0.8, 0.4, 0.0, from_cond=True)
    noise0 = np.array([[[[1.0, -2.0]]], [[[0.5, 0.0]]]], dtype=np.float32)    # two samples
    cond = np.array([[[[0.2, 0.4]]]], dtype=np.float32)
    z = d.initial_latent(noise0, cond, st)
    assert z.dtype == np.float32
    expected = np.float32(np.sqrt(0.31) * np.float64(np.float32(0.2)) + np.sqrt(0.69) * 1.0)
    assert z[0, 0, 0, 0] == expected
    np.testing.assert_allclose(z[1, 0, 0], [np.sqrt(0.31) * 0.2 + np.sqrt(0.69) * 0.5, np.sqrt(0.31) * 0.4],
                               rtol=1e-6)
    assert d.initial_latent(noise0, cond, d.SolverStep(376, 0.31, 0.8, 0.4, 0.0)) is noise0
