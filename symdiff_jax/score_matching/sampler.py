"""The symmetrised reverse-SDE Euler-Maruyama sampler (paper 002, appendix E.1).

One step of the Euler-Maruyama discretisation of the reverse SDE (Anderson 1982; SymDiff
eq. 23), from t to t - dt:

    x' = x - dt [f(x, t) - g(t)^2 s_theta(x, t)] + g(t) sqrt(dt) z,   z ~ N_U(0, I),

is the kernel k_theta; the sampler applies `sym_gamma(k_theta)` (Theorem 1): a fresh
`R ~ gamma(. | x)` at every step, `x' = R k_theta(R^T x)`. (Paper 002 writes the mean with
`+ dt {f - g^2 s}` for time running backwards; with dt > 0 and t decreasing the signs are
the ones above.)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from symdiff_jax.groups import com_free_normal
from symdiff_jax.score_matching.objectives import ScoreFn
from symdiff_jax.score_matching.sde import SDE, broadcast_time
from symdiff_jax.symmetrise import symmetrise


def reverse_sde_step(key: jax.Array, x: jax.Array, t, dt, score_fn: ScoreFn, sde: SDE) -> jax.Array:
    """One reverse-time Euler-Maruyama step `t -> t - dt` on U (SDE paper, eq. 6 and 47).

    Args:
      key: PRNG key of the step noise.
      x: `[..., N, d]` CoM-free state at time t.
      t: scalar or `[...]` current time.
      dt: positive step.
      score_fn: `score_fn(x, t) -> [..., N, d]`.
      sde: the forward SDE.

    Returns:
      `[..., N, d]` state at time t - dt.
    """
    t = broadcast_time(t, x)
    g = sde.diffusion(t)[..., None, None]
    drift = sde.drift(x, t) - g * g * score_fn(x, t)
    z = com_free_normal(key, x.shape, dtype=x.dtype)
    return x - dt * drift + g * jnp.sqrt(dt) * z


def reverse_sde_sample(
    key: jax.Array,
    x_init: jax.Array,
    score_fn: ScoreFn,
    sde: SDE,
    *,
    num_steps: int,
    gamma: Callable | None = None,
    t_min: float = 1e-3,
) -> jax.Array:
    """Integrates the (symmetrised) reverse SDE from t = 1 to t = t_min with `lax.scan`.

    Paper 002, appendix E.1: the Markov chain of `sym_gamma(k_theta)` kernels, with a fresh
    R for every step; without `gamma`, plain Euler-Maruyama. Uniform steps
    `dt = (1 - t_min) / num_steps`.

    Args:
      key: PRNG key (step noise and rotations).
      x_init: `[..., N, d]` prior sample (`prior_sample`), or any start state.
      score_fn: `score_fn(x, t)`.
      sde: the forward SDE.
      num_steps: number of steps.
      gamma: `gamma(key, x, t) -> R [..., d, d]` (e.g. `haar_gamma("O3")`), or None.
      t_min: final time (the SDE paper stops at 1e-3 for VP, 1e-5 for VE).

    Returns:
      `[..., N, d]` samples at t_min.
    """
    dt = (1.0 - t_min) / num_steps

    def kernel(k, x, t):
        return reverse_sde_step(k, x, t, dt, score_fn, sde)

    step = kernel if gamma is None else symmetrise(kernel, gamma)
    times = 1.0 - dt * jnp.arange(num_steps, dtype=x_init.dtype)

    def body(x, inputs):
        k, t = inputs
        return step(k, x, broadcast_time(t, x)), None

    x, _ = jax.lax.scan(body, x_init, (jax.random.split(key, num_steps), times))
    return x


def prior_sample(key: jax.Array, shape, sde: SDE, dtype=None) -> jax.Array:
    """A draw of the prior `N_U(0, prior_std^2 I)` of shape `[..., N, d]`."""
    return sde.prior_std * com_free_normal(key, shape, dtype=dtype)
