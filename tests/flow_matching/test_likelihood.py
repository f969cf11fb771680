"""Exact NLL on U against a flow with a closed-form density."""

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.flow_matching import (
    com_free_log_prior,
    exact_log_likelihood,
    prior_sample,
    projected_divergence,
)

A = 0.4


def linear_flow(x, t):
    """v(x, t) = A x: maps N_U(0, I) at t = 0 to N_U(0, e^{2A} I) at t = 1."""
    del t
    return A * x


def test_linear_flow_log_likelihood(key, x64):
    n, d = 5, 3
    x1 = 1.5 * prior_sample(key, (4, n, d))
    got = jax.vmap(lambda x: exact_log_likelihood(linear_flow, x, num_steps=20))(x1)
    dof = (n - 1) * d
    scale2 = np.exp(2 * A)
    expected = -0.5 * dof * np.log(2 * np.pi * scale2) - np.sum(x1**2, axis=(-2, -1)) / (2 * scale2)
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_projected_divergence_counts_subspace_dimensions(key, x64):
    x = prior_sample(key, (5, 3))
    np.testing.assert_allclose(projected_divergence(linear_flow, x, 0.3), A * 4 * 3)


def test_log_prior_is_normalised_on_subspace(x64):
    # N = 2 atoms in 1D: U is the line x = (u, -u) / sqrt(2) ... integrate over u.
    u = jnp.linspace(-10, 10, 20001)
    x = jnp.stack([u, -u], -1)[:, :, None] / jnp.sqrt(2.0)
    density = jnp.exp(com_free_log_prior(x))
    np.testing.assert_allclose(jnp.trapezoid(density, u), 1.0, rtol=1e-8)
