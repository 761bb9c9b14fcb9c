"""The RNG contract: Gaussian noise from (seed, stream, element index), torch-free.

Every random number of sampling comes from here, so the reference, the runtime and a C++
port produce bit-identical noise.  The contract is deliberately tiny:

    key      = splitmix64(seed * 0x9E3779B97F4A7C15 + stream)          (uint64, wrapping)
    a, b     = splitmix64(key + 2 i), splitmix64(key + 2 i + 1)         for element i (C order)
    u1       = ((a >> 11) + 1) * 2^-53                                  in (0, 1]
    u2       = (b >> 11) * 2^-53                                        in [0, 1)
    noise[i] = float32( sqrt(-2 ln u1) * cos(2 pi u2) )                 (computed in float64)

with splitmix64(x): x += 0x9E3779B97F4A7C15; x = (x ^ x>>30) * 0xBF58476D1CE4E5B9;
x = (x ^ x>>27) * 0x94D049BB133111EB; return x ^ x>>31.

Streams of a sampling call with ``seed`` s: sample j uses seed s + j (so sample j of a batch
equals the single sample drawn with seed s + j); stream 0 is z_T, stream k >= 1 is the
noise added by the k-th executed DDIM step (only when sigma_t > 0).

Fidelity (``contract.DEFAULT_FIDELITY``) never changes a draw: it narrows the schedule
(``diffusion.fidelity_window``), and stream 0 then noises the conditioning latent
(``diffusion.initial_latent``) instead of being z_T itself.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .contract import DEFAULT_FIDELITY, DEFAULT_GENERATION_FIDELITY, FIDELITY, MAX_FIDELITY, MIN_FIDELITY

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64) + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def gaussian(seed: int, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 array of ``shape`` for (seed, stream)."""
    n = int(np.prod(shape, dtype=np.int64))
    with np.errstate(over="ignore"):
        key = splitmix64(np.uint64(seed % 2 ** 64) * _GOLDEN + np.uint64(stream % 2 ** 64))
        idx = np.arange(n, dtype=np.uint64) * np.uint64(2) + key
        a = splitmix64(idx)
        b = splitmix64(idx + np.uint64(1))
    u1 = ((a >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53
    u2 = (b >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return z.astype(np.float32).reshape(shape)


def batch_gaussian(seed: int, stream: int, num_samples: int, shape: tuple[int, ...]) -> np.ndarray:
    """[num_samples, *shape]: sample j drawn with seed + j (see the module contract)."""
    return np.stack([gaussian(seed + j, stream, shape) for j in range(num_samples)])


def fidelity_arg(v) -> float:
    """Validate a fidelity (a real number in 0..1; shared by the requests, APIs and CLIs)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
            or not MIN_FIDELITY <= v <= MAX_FIDELITY:
        raise ValueError(FIDELITY.format(v))
    return float(v)


def default_fidelity(conditional: bool) -> float:
    """The task's default fidelity: upscale's for a conditional sampler, generation's otherwise
    (``contract.DEFAULT_FIDELITY`` / ``DEFAULT_GENERATION_FIDELITY``)."""
    return DEFAULT_FIDELITY if conditional else DEFAULT_GENERATION_FIDELITY
