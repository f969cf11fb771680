"""x0 / eps / v conversions: round trips (hypothesis) and an independent numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symdiff_jax.diffusion import (
    eps_from_v,
    eps_from_x0,
    expand_to,
    to_eps,
    to_v,
    to_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)

gammas = st.floats(min_value=-9.0, max_value=9.0, allow_nan=False)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _problem(gamma, seed, shape=(2, 4, 3)):
    """x0, eps in float64 and alpha, sigma from gamma (per-example, shape [B])."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=shape)
    eps = rng.normal(size=shape)
    g = gamma + rng.uniform(-0.5, 0.5, size=shape[0])
    alpha = np.sqrt(1.0 / (1.0 + np.exp(g)))
    sigma = np.sqrt(1.0 / (1.0 + np.exp(-g)))
    z = alpha[:, None, None] * x0 + sigma[:, None, None] * eps
    return x0, eps, alpha, sigma, z


@settings(max_examples=40, deadline=None)
@given(gamma=gammas, seed=seeds)
def test_round_trips_through_every_kind(gamma, seed):
    with jax.enable_x64(True):
        x0, eps, alpha, sigma, z = _problem(gamma, seed)
        x0, eps, alpha, sigma, z = map(jnp.asarray, (x0, eps, alpha, sigma, z))
        # Reference velocity, written out in numpy: v = alpha eps - sigma x0.
        v_ref = np.asarray(alpha)[:, None, None] * np.asarray(eps) - np.asarray(sigma)[
            :, None, None
        ] * np.asarray(x0)
        v = v_from_x0_eps(x0, eps, alpha, sigma)
        np.testing.assert_allclose(np.asarray(v), v_ref, rtol=1e-12, atol=1e-12)

        np.testing.assert_allclose(x0_from_eps(z, eps, alpha, sigma), x0, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(eps_from_x0(z, x0, alpha, sigma), eps, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(x0_from_v(z, v, alpha, sigma), x0, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(eps_from_v(z, v, alpha, sigma), eps, rtol=1e-9, atol=1e-9)

        truth = {"x0": x0, "eps": eps, "v": v}
        for kind, pred in truth.items():
            np.testing.assert_allclose(to_x0(pred, kind, z, alpha, sigma), x0, atol=1e-8)
            np.testing.assert_allclose(to_eps(pred, kind, z, alpha, sigma), eps, atol=1e-8)
            np.testing.assert_allclose(to_v(pred, kind, z, alpha, sigma), v, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(gamma=gammas, seed=seeds)
def test_any_prediction_determines_the_pair(gamma, seed):
    """From z and one prediction, the other two satisfy z = alpha x0 + sigma eps."""
    with jax.enable_x64(True):
        _, _, alpha, sigma, z = map(jnp.asarray, _problem(gamma, seed))
        pred = jnp.asarray(np.random.default_rng(seed + 1).normal(size=z.shape))
        for kind in ("x0", "eps", "v"):
            x0 = to_x0(pred, kind, z, alpha, sigma)
            eps = to_eps(pred, kind, z, alpha, sigma)
            rebuilt = alpha[:, None, None] * x0 + sigma[:, None, None] * eps
            np.testing.assert_allclose(rebuilt, z, rtol=1e-9, atol=1e-9)


def test_scalar_coefficients_and_float32():
    x0 = jnp.ones((3, 2), jnp.float32)
    eps = jnp.full((3, 2), 2.0, jnp.float32)
    alpha, sigma = 0.6, 0.8
    z = alpha * x0 + sigma * eps
    np.testing.assert_allclose(x0_from_eps(z, eps, alpha, sigma), x0, rtol=1e-6)
    assert x0_from_eps(z, eps, alpha, sigma).dtype == jnp.float32
    assert expand_to(jnp.ones(4), jnp.ones((4, 5, 3))).shape == (4, 1, 1)


def test_unknown_kind_and_bad_shapes_raise():
    z = jnp.zeros((2, 3, 3))
    with pytest.raises(ValueError, match="Unknown prediction kind"):
        to_x0(z, "score", z, 1.0, 0.0)
    with pytest.raises(ValueError, match="Unknown prediction kind"):
        to_eps(z, "X0", z, 1.0, 0.0)
    with pytest.raises(ValueError, match="more axes"):
        x0_from_eps(jnp.zeros((3,)), jnp.zeros((3,)), jnp.ones((3, 1)), jnp.ones((3, 1)))
