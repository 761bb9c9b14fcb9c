"""DDPM / DDIM math as pure functions (float64 numpy), shared by the reference and the runtime.

Nothing here imports torch: the runtime imports this module to compute the per-step
coefficients it feeds to the exported ``unet_step`` graph.  The step formulas
(``pred_z0``, ``ddim_step``) use arithmetic only, so the very same function runs on numpy
arrays here and on torch tensors inside the reference U-Net step that is exported.

Notation follows the paper: ``alpha_bar_t`` = prod_{s<=t} (1 - beta_s),
z_t = sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) eps.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .contract import (DDIM_SCHEDULES, DEFAULT_DDIM_SCHEDULE, DEFAULT_SAMPLER, ETA, ETA_TOO_LARGE,
                       LOWER_ORDER_FINAL_BELOW, ONE_OF, PAPER_STEPS, SAMPLERS, SCHEDULE_STEPS)

SCHEDULES = ("linear", "linear_beta", "cosine")


def make_betas(schedule: str, timesteps: int, linear_start: float = 0.0015,
               linear_end: float = 0.0155, cosine_s: float = 8e-3) -> np.ndarray:
    """beta_1..beta_T (float64, shape [T]).

    - ``"linear"``: the official latent-diffusion schedule, linear in sqrt(beta):
      betas = linspace(sqrt(start), sqrt(end), T)^2.
    - ``"linear_beta"``: DDPM's betas = linspace(start, end, T).
    - ``"cosine"``: Nichol & Dhariwal, alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2), betas clipped at 0.999.
    """
    if timesteps < 1:
        raise ValueError("timesteps must be >= 1")
    if schedule == "linear":
        return np.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=np.float64) ** 2
    if schedule == "linear_beta":
        return np.linspace(linear_start, linear_end, timesteps, dtype=np.float64)
    if schedule == "cosine":
        steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
        f = np.cos((steps + cosine_s) / (1 + cosine_s) * np.pi / 2) ** 2
        alpha_bar = f / f[0]
        return np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0.0, 0.999)
    raise ValueError(f"unknown schedule {schedule!r}; choose from {SCHEDULES}")


def alpha_bar_from_betas(betas: np.ndarray) -> np.ndarray:
    """alpha_bar_t = cumprod(1 - beta), float64 [T]."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def alpha_bar_for(cfg) -> np.ndarray:
    """alpha_bar of a ``DiffusionConfig`` (or any object with its fields)."""
    return alpha_bar_from_betas(make_betas(cfg.schedule, cfg.timesteps, cfg.linear_start,
                                           cfg.linear_end, cfg.cosine_s))


def q_sample(z0, eps, alpha_bar_t):
    """Forward process: z_t = sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) eps (any array type)."""
    return alpha_bar_t ** 0.5 * z0 + (1 - alpha_bar_t) ** 0.5 * eps


def pred_z0(z_t, eps, alpha_bar_t):
    """eps -> z_0 estimate: (z_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    return (z_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t ** 0.5


def align_weight(alpha_bar_t):
    """The alignment loss weight alpha_bar_t / (1 - alpha_bar_t) (the signal-to-noise ratio)."""
    return alpha_bar_t / (1 - alpha_bar_t)


def ddim_timesteps(timesteps: int, steps: int) -> np.ndarray:
    """The N timesteps DDIM visits, ascending: 1, 1 + c, 1 + 2c, ... with c = T // N.

    As the official (latent-diffusion "uniform") discretisation, shifted by one so that the
    last step lands next to the data, and always exactly N distinct entries.  The shifted grid
    would reach index T (past the end of alpha_bar, indices 0..T-1) only for N = T; there
    each entry is clipped to stay below T with room for the ones after it
    (t_k = min(1 + k c, T - N + k)), so N = T visits every timestep 0..T-1.  For every
    N < T the clip never binds and the grid is exactly 1, 1 + c, ...
    """
    if not 1 <= steps <= timesteps:
        raise ValueError(SCHEDULE_STEPS.format(timesteps, steps))
    k = np.arange(steps, dtype=np.int64)
    return np.minimum(k * (timesteps // steps) + 1, timesteps - steps + k)


# How many of the N timesteps the sampler executes:
# - "full": all N, the first at the noisiest timestep (the latent-diffusion DDIMSampler
#   called with its defaults by the upstream scripts, and diffusers);
# - "paper": the sampler published with the paper (its DDIM ``sample()`` never passes
#   ``t_start``, and ``ddim_sampling`` defaults to ``t_start=-1``, i.e.
#   ``ddim_timesteps[:-1]``): the noisiest timestep is dropped, so N requested steps run N - 1,
#   starting one grid step lower (50 steps: 49 from t = 961 instead of 981; 10: 9 from 801).
#   The coefficients of the remaining steps are those of the full schedule.
# The names and the default: contract.DDIM_SCHEDULES, contract.DEFAULT_DDIM_SCHEDULE.


def ddim_executed_timesteps(timesteps: int, steps: int, schedule: str = DEFAULT_DDIM_SCHEDULE) -> np.ndarray:
    """The timesteps actually executed, ascending (see ``DDIM_SCHEDULES``)."""
    if schedule not in DDIM_SCHEDULES:
        raise ValueError(ONE_OF.format("schedule", ", ".join(DDIM_SCHEDULES), repr(schedule)))
    if schedule == "paper" and steps < 2:
        raise ValueError(PAPER_STEPS.format(timesteps, steps))
    ts = ddim_timesteps(timesteps, steps)
    return ts[:-1] if schedule == "paper" else ts


@dataclass(frozen=True)
class DDIMStep:
    """Coefficients of one DDIM step, the values fed to the ``unet_step`` graph."""
    t: int                  # timestep given to the U-Net
    alpha_bar_t: float      # alpha_bar at t
    alpha_bar_prev: float   # alpha_bar of the step the update lands on
    sigma_t: float          # noise scale: eta * sqrt((1 - ab_prev)/(1 - ab_t) * (1 - ab_t/ab_prev))
    from_cond: bool = False  # the first step of a window that skips the noisiest steps: z_t is the
    #                          conditioning latent noised to alpha_bar_t (``initial_latent``)


def ddim_schedule(alpha_bar: np.ndarray, steps: int, eta: float,
                  schedule: str = DEFAULT_DDIM_SCHEDULE, window: tuple[int, int] = (0, 0)) -> list[DDIMStep]:
    """The sampling steps in execution order (t descending); ``schedule`` "full" or
    "paper" (``DDIM_SCHEDULES``).  Raises ValueError for an eta whose sigma_t would exceed
    what the step allows (1 - alpha_bar_prev - sigma_t^2 < 0: the square root of a negative
    direction term), naming the largest eta that works."""
    if not np.isfinite(eta) or eta < 0:
        raise ValueError(ETA.format(eta))
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    ts = ddim_timesteps(len(alpha_bar), steps)
    ab = alpha_bar[ts]
    # the step that starts at ts[0] lands on alpha_bar[0], as the official sampler
    ab_prev = np.concatenate([alpha_bar[:1], alpha_bar[ts[:-1]]])
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    n = len(ddim_executed_timesteps(len(alpha_bar), steps, schedule))
    if np.any(1 - ab_prev[:n] - sigma[:n] ** 2 < -1e-12):
        ratio = (1 - ab[:n] / ab_prev[:n]) / (1 - ab[:n])     # sigma_t^2 / (eta^2 (1 - ab_prev))
        largest = float(np.sqrt(1 / ratio.max()))
        raise ValueError(ETA_TOO_LARGE.format(f"{eta:g}", steps, f"{largest:.4g}"))
    out = [DDIMStep(int(t), float(a), float(p), float(s)) for t, a, p, s in zip(ts, ab, ab_prev, sigma)]
    skip, stop = window
    out = out[:n][::-1][skip:n - stop]
    if stop:       # the exit: alpha_bar_prev 1 and no noise make the step's z_prev its pred_z0, exactly
        out[-1] = replace(out[-1], alpha_bar_prev=1.0, sigma_t=0.0)
    if skip:
        out[0] = replace(out[0], from_cond=True)
    return out


def ddim_step(z_t, eps, alpha_bar_t, alpha_bar_prev, sigma_t, noise):
    """One DDIM update (any array type). Returns (z_prev, pred_z0).

    z_prev = sqrt(ab_prev) * pred_z0 + sqrt(1 - ab_prev - sigma_t^2) * eps + sigma_t * noise
    """
    z0 = pred_z0(z_t, eps, alpha_bar_t)
    dir_coef = (1 - alpha_bar_prev - sigma_t ** 2) ** 0.5
    return alpha_bar_prev ** 0.5 * z0 + dir_coef * eps + sigma_t * noise, z0


# -- multistep solver: the same image in fewer steps ------------------------------------------
# Samplers over the one ``unet_step`` graph: "ddim" (its own z_prev, eta as given) or
# "dpm++2m", DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling
# of Diffusion Probabilistic Models", Algorithm 2): a deterministic (ODE) solver that reuses the
# previous step's data prediction for second order, from the graph's ``pred_z0`` output.
# The names and the defaults (and why they are the defaults): contract.SAMPLERS,
# contract.DEFAULT_SAMPLER, contract.DEFAULT_STEPS.


@dataclass(frozen=True)
class SolverStep:
    """One step of a multistep solver: the U-Net runs at ``t`` (its ``pred_z0`` is D_i), then
    z_next = c_x * z_t + c_d * D_i + c_d_prev * D_{i-1} (``solver_update``)."""
    t: int
    alpha_bar_t: float
    c_x: float
    c_d: float
    c_d_prev: float
    alpha_bar_prev: float = 0.0     # what the graph's own DDIM output would use; unused
    sigma_t: float = 0.0            # no noise: the solver integrates the probability-flow ODE
    from_cond: bool = False         # as DDIMStep's


def log_snr(alpha_bar) -> np.ndarray:
    """lambda_t = log(alpha_t / sigma_t) with alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t)."""
    ab = np.asarray(alpha_bar, dtype=np.float64)
    return 0.5 * (np.log(ab) - np.log1p(-ab))


def dpm_solver_schedule(alpha_bar: np.ndarray, steps: int, window: tuple[int, int] = (0, 0)) -> list[SolverStep]:
    """DPM-Solver++(2M) over the DDIM grid (``ddim_timesteps``, t descending), each step
    landing where DDIM's "full" schedule lands (the last on alpha_bar[0]).  Step i from t_i to
    s_i, with h_i = lambda(s_i) - lambda(t_i) and r_i = h_{i-1} / h_i:

        z_s = (sigma_s / sigma_t) z_t + alpha_s (1 - e^{-h_i}) D,
        D   = D_i                                        first order (i = 0, and the last step
                                                         below LOWER_ORDER_FINAL_BELOW steps),
        D   = (1 + 1 / (2 r_i)) D_i - 1 / (2 r_i) D_{i-1}  second order otherwise.

    First order is DDIM with eta = 0, exactly.  ``window`` = (skip, stop) (``fidelity_window``):
    only steps skip .. steps - stop - 1 run, the first of them first order (there is no D_{i-1}),
    and with stop > 0 the last returns its D_i (c_x 0, c_d 1): the exit."""
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    ts = ddim_timesteps(len(alpha_bar), steps)[::-1]                     # descending
    lands = np.concatenate([ts[1:], [0]])
    ab_t, ab_s = alpha_bar[ts], alpha_bar[lands]
    lam_t, lam_s = log_snr(ab_t), log_snr(ab_s)
    h = lam_s - lam_t
    skip, stop = window
    out = []
    for i in range(skip, steps - stop):
        if stop and i == steps - stop - 1:
            out.append(SolverStep(int(ts[i]), float(ab_t[i]), 0.0, 1.0, 0.0, from_cond=bool(skip) and i == skip))
            break
        c_x = np.sqrt((1 - ab_s[i]) / (1 - ab_t[i]))
        a = np.sqrt(ab_s[i]) * -np.expm1(-h[i])                            # alpha_s (1 - e^{-h})
        first = i == skip or (i == steps - 1 and steps < LOWER_ORDER_FINAL_BELOW)
        if h[i] == 0:              # steps = T: the last step starts on alpha_bar[0], where it lands
            c_d, c_p = 0.0, 0.0
        elif first or h[i - 1] == 0:
            c_d, c_p = a, 0.0
        else:
            r = h[i - 1] / h[i]
            c_d, c_p = a * (1 + 1 / (2 * r)), -a / (2 * r)
        out.append(SolverStep(int(ts[i]), float(ab_t[i]), float(c_x), float(c_d), float(c_p),
                              from_cond=bool(skip) and i == skip))
    return out


def solver_update(z_t, d, d_prev, st: SolverStep):
    """z_next = c_x z_t + c_d D_i + c_d_prev D_{i-1} (any array type; ``d_prev`` unused when
    its coefficient is 0, so it may be None on the first step)."""
    z = st.c_x * z_t + st.c_d * d
    return z if st.c_d_prev == 0 else z + st.c_d_prev * d_prev


def sampling_schedule(alpha_bar: np.ndarray, steps: int, eta: float, schedule: str = DEFAULT_DDIM_SCHEDULE,
                      sampler: str = DEFAULT_SAMPLER, fidelity: float = 0.0, conditional: bool = False) -> list:
    """The steps a sampler executes: ``ddim_schedule`` (DDIMStep) or ``dpm_solver_schedule``
    (SolverStep; ``eta`` and ``schedule`` are DDIM's and do not apply), over the window that
    ``fidelity`` opens (``fidelity_window``; a ``conditional`` sampler may skip the noisiest
    steps).  ValueError names a bad sampler; ``fidelity`` is checked by the caller
    (``noise.fidelity_arg``)."""
    if sampler not in SAMPLERS:
        raise ValueError(ONE_OF.format("sampler", ", ".join(SAMPLERS), repr(sampler)))
    if sampler == "ddim":
        n = len(ddim_executed_timesteps(len(alpha_bar), steps, schedule))
        return ddim_schedule(alpha_bar, steps, eta, schedule, fidelity_window(n, fidelity, conditional))
    if not 1 <= steps <= len(alpha_bar):
        raise ValueError(SCHEDULE_STEPS.format(len(alpha_bar), steps))
    return dpm_solver_schedule(alpha_bar, steps, fidelity_window(steps, fidelity, conditional))


# -- fidelity: detail against faithfulness --------------------------------------------------
# Fidelity F (0..1) narrows the sampler's window on its own grid of n executed steps:
# - ``skip`` = round(F n / 2) noisiest steps are not run (conditional samplers only): the first
#   step that runs starts from the conditioning latent (E of the LR, which already holds the
#   low frequencies) noised to its alpha_bar_t (``initial_latent``), as SDEdit (Meng et al.
#   2022) and CCDF (Chung et al. 2022, "Come-Closer-Diffuse-Faster") start from a noised
#   estimate.  From pure noise a few-step solver's first z_0 estimates are amplified by
#   1 / sqrt(alpha_bar_t) and leave low-frequency colour errors (measured: -5.9 dB against
#   bicubic on a smooth held-out wall at F 0, -2.3 from t = 376);
# - ``stop`` = round(F n / 4) least noisy steps are not run either: the last step that runs
#   returns its pred_z0, the network's posterior-mean estimate of z_0 given its z_t, instead of
#   drawing the remaining detail (the faithful end of the dial).
# F 0 is the paper's sampler (full window, z_T pure noise).  At least one step always runs.
# Fewer steps run as F grows: at n = 8, F 0.5 runs 5, F 1 runs 2.


def fidelity_window(n: int, fidelity: float, conditional: bool) -> tuple[int, int]:
    """(skip, stop): how many of the n executed steps fidelity leaves out at the noisy and at
    the clean end (round half up; skip 0 for an unconditional sampler)."""
    skip = min(n - 1, int(np.floor(fidelity * n / 2 + 0.5))) if conditional else 0
    stop = min(n - 1 - skip, int(np.floor(fidelity * n / 4 + 0.5)))
    return skip, stop


def initial_latent(noise0: np.ndarray, cond: np.ndarray | None, first) -> np.ndarray:
    """The latent the first step runs on: the draw ``noise0`` itself, or with ``first.from_cond``
    q_sample of the conditioning latent [1, c, h, w] at the step's alpha_bar_t, in float64
    rounded once to float32 (the C++ runtime computes the same bits)."""
    if not first.from_cond:
        return noise0
    ab = first.alpha_bar_t
    z = np.sqrt(ab) * cond.astype(np.float64) + np.sqrt(1.0 - ab) * noise0.astype(np.float64)
    return z.astype(np.float32)
