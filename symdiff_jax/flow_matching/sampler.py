"""The symmetrised Euler sampler of flow matching (paper 002, appendix E.2, eq. 28-29).

The Euler step `x' = x + dt v_theta(x, t)` is the deterministic kernel k_theta; the sampler
applies `sym_gamma(k_theta)` with a fresh `R ~ gamma(. | x)` at every step:
`x' = x + dt R v_theta(R^T x, t)`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from symdiff_jax.flow_matching.objectives import VelocityFn
from symdiff_jax.symmetrise import symmetrise


def euler_step(x: jax.Array, t, dt, velocity_fn: VelocityFn) -> jax.Array:
    """One Euler step of `dx/dt = v(x, t)` (paper 002, eq. 28): `x + dt v(x, t)`."""
    t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:-2])
    return x + dt * velocity_fn(x, t)


def euler_sample(
    key: jax.Array,
    x_init: jax.Array,
    velocity_fn: VelocityFn,
    *,
    num_steps: int,
    gamma: Callable | None = None,
) -> jax.Array:
    """Integrates the (symmetrised) flow from t = 0 to t = 1 with `num_steps` Euler steps.

    Paper 002, appendix E.2: the chain of `sym_gamma(k_theta)` kernels, eq. 29, a fresh R
    for every step (`lax.scan`); without `gamma` the plain Euler ODE solver.

    Args:
      key: PRNG key of the rotations (unused without `gamma`).
      x_init: `[..., N, d]` prior draws (`prior_sample`) or any start state.
      velocity_fn: `velocity_fn(x, t)`.
      num_steps: number of uniform steps, dt = 1 / num_steps.
      gamma: `gamma(key, x, t) -> R [..., d, d]`, or None.

    Returns:
      `[..., N, d]` samples at t = 1.
    """
    dt = 1.0 / num_steps

    def kernel(k, x, t):
        del k
        return euler_step(x, t, dt, velocity_fn)

    step = kernel if gamma is None else symmetrise(kernel, gamma)
    times = dt * jnp.arange(num_steps, dtype=x_init.dtype)

    def body(x, inputs):
        k, t = inputs
        return step(k, x, jnp.broadcast_to(t, x.shape[:-2])), None

    x, _ = jax.lax.scan(body, x_init, (jax.random.split(key, num_steps), times))
    return x
