"""The variance-preserving and variance-exploding SDEs of score-based models.

Song et al. (2021), "Score-based generative modeling through stochastic differential
equations" (SDE paper), section 3.4 and appendix B: the forward SDE
`dx = f(x, t) dt + g(t) dw` (SymDiff, paper 002, eq. 22) on t in [0, 1], with Gaussian
marginals `p(x_t | x_0) = N(m(t) x_0, s(t)^2 I)`. On point clouds the noise lives on the
centre-of-mass-free subspace U, so every marginal is `N_U` (`symdiff_jax.groups.com_free_normal`).
Both drifts are linear in x, hence S_N x O(d)-equivariant as SymDiff appendix E.1 assumes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

BETA_MIN, BETA_MAX = 0.1, 20.0  # Song et al. (2021), appendix C (VP SDE)
SIGMA_MIN, SIGMA_MAX = 0.01, 50.0  # Song et al. (2021), appendix C (VE SDE; CIFAR-10 uses 50)


def vp_beta(t, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX):
    """Linear rate `beta(t) = beta_min + t (beta_max - beta_min)` (SDE paper, eq. 11 limit)."""
    return beta_min + t * (beta_max - beta_min)


def vp_mean_coefficient(t, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX):
    """`m(t) = exp(-1/2 int_0^t beta)` of the VP marginal (SDE paper, eq. 29)."""
    integral = beta_min * t + 0.5 * t * t * (beta_max - beta_min)
    return jnp.exp(-0.5 * integral)


def vp_std(t, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX):
    """`s(t) = sqrt(1 - exp(-int_0^t beta))` of the VP marginal (SDE paper, eq. 29)."""
    integral = beta_min * t + 0.5 * t * t * (beta_max - beta_min)
    return jnp.sqrt(-jnp.expm1(-integral))


def vp_drift(x, t, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX):
    """VP drift `f(x, t) = -1/2 beta(t) x` (SDE paper, eq. 11), `t [...]`, `x [..., N, d]`."""
    return -0.5 * jnp.asarray(vp_beta(t, beta_min, beta_max))[..., None, None] * x


def vp_diffusion(t, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX):
    """VP diffusion coefficient `g(t) = sqrt(beta(t))` (SDE paper, eq. 11)."""
    return jnp.sqrt(vp_beta(t, beta_min, beta_max))


def ve_sigma(t, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """Geometric noise level `sigma(t) = sigma_min (sigma_max / sigma_min)^t` (SDE paper, eq. 9)."""
    return sigma_min * (sigma_max / sigma_min) ** t


def ve_mean_coefficient(t, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """`m(t) = 1`: the VE SDE has no drift (SDE paper, eq. 9)."""
    del sigma_min, sigma_max
    return jnp.ones_like(jnp.asarray(t, jnp.result_type(float)))


def ve_std(t, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """Exact VE marginal std `s(t) = sqrt(sigma(t)^2 - sigma_min^2)` (SDE paper, eq. 30).

    The SDE paper's code uses `sigma(t)` itself (an approximation for t >> 0); the exact
    form makes `s(0) = 0`, consistent with `ve_diffusion`.
    """
    return sigma_min * jnp.sqrt(jnp.expm1(2.0 * t * jnp.log(sigma_max / sigma_min)))


def ve_drift(x, t, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """VE drift `f(x, t) = 0` (SDE paper, eq. 9)."""
    del t, sigma_min, sigma_max
    return jnp.zeros_like(x)


def ve_diffusion(t, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """VE diffusion `g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min))` (SDE paper, eq. 9)."""
    return ve_sigma(t, sigma_min, sigma_max) * jnp.sqrt(2.0 * jnp.log(sigma_max / sigma_min))


class SDE(NamedTuple):
    """A forward SDE on U with Gaussian marginals `N_U(m(t) x0, s(t)^2 I)`.

    Attributes:
      mean_coefficient: `t -> m(t)`.
      std: `t -> s(t)`.
      drift: `(x, t) -> f(x, t)`.
      diffusion: `t -> g(t)`.
      prior_std: standard deviation of the prior `N_U(0, prior_std^2 I)` at t = 1.
    """

    mean_coefficient: Callable
    std: Callable
    drift: Callable
    diffusion: Callable
    prior_std: float


def vp_sde(beta_min: float = BETA_MIN, beta_max: float = BETA_MAX) -> SDE:
    """The VP SDE (Song et al. 2021, eq. 11) with linear beta; prior `N_U(0, I)`."""
    kw = {"beta_min": beta_min, "beta_max": beta_max}
    return SDE(
        functools.partial(vp_mean_coefficient, **kw),
        functools.partial(vp_std, **kw),
        functools.partial(vp_drift, **kw),
        functools.partial(vp_diffusion, **kw),
        1.0,
    )


def ve_sde(sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> SDE:
    """The VE SDE (Song et al. 2021, eq. 9); prior `N_U(0, sigma_max^2 I)`."""
    kw = {"sigma_min": sigma_min, "sigma_max": sigma_max}
    return SDE(
        functools.partial(ve_mean_coefficient, **kw),
        functools.partial(ve_std, **kw),
        functools.partial(ve_drift, **kw),
        functools.partial(ve_diffusion, **kw),
        float(sigma_max),
    )


def get_sde(name: str, **kwargs) -> SDE:
    """`vp_sde(**kwargs)` for "vp", `ve_sde(**kwargs)` for "ve"."""
    builders = {"vp": vp_sde, "ve": ve_sde}
    if name not in builders:
        raise ValueError(f"Unknown SDE {name!r}; expected one of {sorted(builders)}.")
    return builders[name](**kwargs)


def broadcast_time(t, x: jax.Array) -> jax.Array:
    """Time `t` (scalar or `[...]`) as an array `[...]` matching the batch of `x [..., N, d]`."""
    return jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:-2])
