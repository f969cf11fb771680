"""Exact log-likelihood of a deterministic flow on the CoM-free subspace.

Change of variables for the ODE `dx/dt = v(x, t)` from the prior at t = 0 to the data at
t = 1 (Chen et al. 2018, "Neural ordinary differential equations", Theorem 1):

    log p_1(x_1) = log p_0(x_0) - int_0^1 div_U v(x_t, t) dt,

integrated backwards from x_1 with fixed-step RK4. The prior is `N_U(0, I)` with
(N - 1) d degrees of freedom, and the divergence is the trace of the Jacobian restricted to
U, `tr(J P)` with `P = (I_N - 1 1^T / N) (x) I_d` the projector onto U (Koehler et al. 2020,
section 4; Klein et al. 2023, appendix). The Jacobian comes from `jax.jacfwd` (exact, no
trace estimator).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from symdiff_jax.flow_matching.objectives import VelocityFn


def com_free_log_prior(x: jax.Array) -> jax.Array:
    """`log N_U(x; 0, I) = -(N - 1) d / 2 log(2 pi) - |x|^2 / 2` for CoM-free `x [..., N, d]`."""
    n, d = x.shape[-2:]
    return -0.5 * (n - 1) * d * math.log(2.0 * math.pi) - 0.5 * jnp.sum(x * x, axis=(-2, -1))


def projected_divergence(velocity_fn: VelocityFn, x: jax.Array, t) -> jax.Array:
    """`div_U v(x, t) = tr(J_v(x) P)` for one state `x [N, d]` (P projects onto U)."""
    n, d = x.shape

    def flat(z):
        return velocity_fn(z.reshape(1, n, d), jnp.reshape(t, (1,)).astype(x.dtype))[0].reshape(-1)

    jac = jax.jacfwd(flat)(x.reshape(-1))
    proj = jnp.kron(jnp.eye(n, dtype=x.dtype) - 1.0 / n, jnp.eye(d, dtype=x.dtype))
    return jnp.trace(jac @ proj)


def exact_log_likelihood(velocity_fn: VelocityFn, x1: jax.Array, num_steps: int = 50) -> jax.Array:
    """`log p_1(x_1)` of the flow's samples, exactly up to the RK4 error, for one `x1 [N, d]`.

    Use `jax.vmap` over a batch; the NLL is the negative. Densities are with respect to the
    Lebesgue measure on U ((N - 1) d dimensions).

    Args:
      velocity_fn: `velocity_fn(x [B, N, d], t [B]) -> [B, N, d]` (deterministic).
      x1: `[N, d]` CoM-free data point.
      num_steps: RK4 steps from t = 1 back to t = 0.
    """
    dt = -1.0 / num_steps

    def field(state, t):
        x, _ = state
        v = velocity_fn(x[None], jnp.reshape(t, (1,)).astype(x.dtype))[0]
        return v, -projected_divergence(velocity_fn, x, t)

    def rk4(state, t):
        k1 = field(state, t)
        k2 = field(jax.tree.map(lambda s, k: s + 0.5 * dt * k, state, k1), t + 0.5 * dt)
        k3 = field(jax.tree.map(lambda s, k: s + 0.5 * dt * k, state, k2), t + 0.5 * dt)
        k4 = field(jax.tree.map(lambda s, k: s + dt * k, state, k3), t + dt)
        new = jax.tree.map(
            lambda s, a, b, c, e: s + dt / 6.0 * (a + 2 * b + 2 * c + e), state, k1, k2, k3, k4
        )
        return new, None

    times = 1.0 + dt * jnp.arange(num_steps, dtype=x1.dtype)
    (x0, delta), _ = jax.lax.scan(rk4, (x1, jnp.zeros((), x1.dtype)), times)
    # delta = -int_1^0 div dt = int_0^1 div dt.
    return com_free_log_prior(x0) - delta
