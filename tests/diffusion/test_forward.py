"""Forward noising and the Gaussian posterior q(z_s | z_t, x0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.diffusion import (
    noise,
    noise_features,
    polynomial_schedule,
    posterior,
    posterior_from_gammas,
    project,
    sample_noise,
    transition_from_gammas,
)
from symdiff_jax.groups import com_free_normal

N, D, REAL = 7, 3, 5
MASK = jnp.array([1, 1, 1, 1, 1, 0, 0], jnp.float32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _empirical_cov(samples):
    """Second moments of zero-mean samples [M, k] -> [k, k] (the mean is known to be 0)."""
    return samples.T @ samples / samples.shape[0]


def test_com_free_noise_sums_to_zero_and_padding_is_zero(key):
    k1, k2 = jax.random.split(key)
    x0 = project(jax.random.normal(k1, (4, N, D)), MASK)
    alpha, sigma = jnp.array([0.9, 0.5, 0.3, 0.1]), jnp.array([0.43, 0.86, 0.95, 0.99])
    z, eps = noise(k2, x0, alpha, sigma, MASK)
    assert z.shape == eps.shape == (4, N, D)
    np.testing.assert_allclose(np.asarray(eps[:, :REAL].sum(1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(z[:, :REAL].sum(1)), 0.0, atol=1e-5)
    assert np.all(np.asarray(z[:, REAL:]) == 0.0) and np.all(np.asarray(eps[:, REAL:]) == 0.0)
    expected = alpha[:, None, None] * x0 + sigma[:, None, None] * eps
    np.testing.assert_allclose(np.asarray(z), np.asarray(expected), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("com_free", [True, False])
def test_noise_covariance_of_real_rows(key, com_free):
    """Covariance of the flattened real rows is (I - 11^T/n) (x) I_d (CoM-free) or I.

    M = 20000 draws; each estimated entry has standard deviation <= sqrt(2 / M); the
    tolerance is 6 of those, so with 225 entries the false-alarm rate is < 225 * 2e-9.
    """
    m = 20000
    eps = sample_noise(key, (m, N, D), jnp.broadcast_to(MASK, (m, N)), com_free=com_free)
    eps = np.asarray(eps, np.float64)
    assert np.all(eps[:, REAL:] == 0.0)
    cov = _empirical_cov(eps[:, :REAL].reshape(m, REAL * D))
    centring = np.eye(REAL) - np.ones((REAL, REAL)) / REAL if com_free else np.eye(REAL)
    expected = np.kron(centring, np.eye(D))
    tol = 6 * np.sqrt(2.0 / m)
    assert np.max(np.abs(cov - expected)) < tol, np.max(np.abs(cov - expected))


def test_noise_features_are_plain_masked_normals(key):
    """Feature noise is not centred: its row sums have variance n (not 0). Statistical
    check with M = 20000: 6 standard errors, false alarm < 4e-9 per entry."""
    m = 20000
    h0 = jnp.zeros((m, N, 2))
    h, eps = noise_features(key, h0, 0.6, 0.8, jnp.broadcast_to(MASK, (m, N)))
    assert np.all(np.asarray(h[:, REAL:]) == 0.0)
    np.testing.assert_allclose(np.asarray(h), 0.8 * np.asarray(eps), rtol=1e-6)
    row_sums = np.asarray(eps[:, :REAL].sum(1), np.float64)
    var = row_sums.var(0)
    np.testing.assert_allclose(var, REAL, atol=6 * REAL * np.sqrt(2.0 / m))
    cov = _empirical_cov(np.asarray(eps[:, :REAL], np.float64).reshape(m, -1))
    assert np.max(np.abs(cov - np.eye(REAL * 2))) < 6 * np.sqrt(2.0 / m)


def test_project_with_position_columns(key):
    z = jax.random.normal(key, (3, N, D + 4))
    out = project(z, MASK, com_free=True, position_dims=D)
    np.testing.assert_allclose(np.asarray(out[:, :REAL, :D].sum(1)), 0.0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out[:, :REAL, D:]), np.asarray(z[:, :REAL, D:]))
    assert np.all(np.asarray(out[:, REAL:]) == 0.0)
    with pytest.raises(ValueError, match="position_dims"):
        project(z, MASK, position_dims=D + 5)


def test_mask_mismatch_raises(key):
    with pytest.raises(ValueError, match="mask"):
        noise(key, jnp.zeros((2, N, D)), 0.5, 0.5, jnp.ones((2, N + 1)))
    with pytest.raises(ValueError, match="point cloud"):
        noise(key, jnp.zeros((3,)), 0.5, 0.5)


def _brute_force_posterior(x0, z_t, a_s, s_s, a_t, s_t):
    """Condition the joint Gaussian of (z_s, z_t) | x0 with numpy linear algebra.

    Forward chain (paper 002, section 2.2): z_s = a_s x0 + s_s e1,
    z_t = a_{t|s} z_s + s_{t|s} e2, a_{t|s} = a_t / a_s, s_{t|s}^2 = s_t^2 - a_{t|s}^2 s_s^2.
    (z_s, z_t) = A (e1, e2) + b, so Cov = A A^T; then the usual Schur complement.
    """
    k = x0.size
    a_ts = a_t / a_s
    s_ts = np.sqrt(s_t**2 - a_ts**2 * s_s**2)
    eye, zero = np.eye(k), np.zeros((k, k))
    A = np.block([[s_s * eye, zero], [a_ts * s_s * eye, s_ts * eye]])
    b = np.concatenate([a_s * x0.ravel(), a_ts * a_s * x0.ravel()])
    cov = A @ A.T
    c_ss, c_st, c_tt = cov[:k, :k], cov[:k, k:], cov[k:, k:]
    gain = np.linalg.solve(c_tt, c_st.T).T
    mean = b[:k] + gain @ (z_t.ravel() - b[k:])
    post_cov = c_ss - gain @ c_st.T
    return mean.reshape(x0.shape), post_cov


@pytest.mark.parametrize("gamma_s,gamma_t", [(-6.0, -5.0), (-2.0, 3.0), (1.0, 1.3), (4.0, 9.0)])
def test_posterior_matches_brute_force_conditioning(gamma_s, gamma_t, x64):
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(4, 3))
    z_t = rng.normal(size=(4, 3))
    a_s, s_s = np.sqrt(_sigmoid(-gamma_s)), np.sqrt(_sigmoid(gamma_s))
    a_t, s_t = np.sqrt(_sigmoid(-gamma_t)), np.sqrt(_sigmoid(gamma_t))
    ref_mean, ref_cov = _brute_force_posterior(x0, z_t, a_s, s_s, a_t, s_t)
    ref_std = np.sqrt(ref_cov[0, 0])
    np.testing.assert_allclose(ref_cov, ref_std**2 * np.eye(12), atol=1e-12)

    mean, std = posterior(jnp.asarray(z_t), jnp.asarray(x0), a_s, s_s, a_t, s_t)
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(float(np.squeeze(std)), ref_std, rtol=1e-8)

    mean_g, std_g = posterior_from_gammas(jnp.asarray(z_t), jnp.asarray(x0), gamma_s, gamma_t)
    np.testing.assert_allclose(np.asarray(mean_g), ref_mean, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(float(np.squeeze(std_g)), ref_std, rtol=1e-8)


def test_posterior_batched_coefficients(x64):
    """Per-example coefficients [B] broadcast onto [B, N, d] and match the scalar calls."""
    rng = np.random.default_rng(1)
    z_t, x0 = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2))
    g_s, g_t = np.array([-3.0, 0.0, 2.0]), np.array([-1.0, 0.5, 6.0])
    mean, std = posterior_from_gammas(jnp.asarray(z_t), jnp.asarray(x0), g_s, g_t)
    assert mean.shape == (3, 4, 2) and std.shape == (3, 1, 1)
    for b in range(3):
        m_b, s_b = posterior_from_gammas(jnp.asarray(z_t[b]), jnp.asarray(x0[b]), g_s[b], g_t[b])
        np.testing.assert_allclose(np.asarray(mean[b]), np.asarray(m_b), rtol=1e-12)
        np.testing.assert_allclose(float(std[b, 0, 0]), float(np.squeeze(s_b)), rtol=1e-12)


def test_transition_from_gammas(x64):
    g_s, g_t = np.array([-11.0, -3.0, 0.0, 5.0]), np.array([-10.9, 2.0, 1e-3, 11.5])
    alpha_ts, sigma2_ts = transition_from_gammas(g_s, g_t)
    a_ts_ref = np.sqrt(_sigmoid(-g_t) / _sigmoid(-g_s))
    np.testing.assert_allclose(np.asarray(alpha_ts), a_ts_ref, rtol=1e-12)
    s2_ref = _sigmoid(g_t) - a_ts_ref**2 * _sigmoid(g_s)
    np.testing.assert_allclose(np.asarray(sigma2_ts), s2_ref, rtol=1e-9)


def test_transition_is_accurate_in_float32_for_adjacent_grid_points():
    """On the 1000 adjacent grid pairs of polynomial_2, float32 sigma_{t|s}^2 agrees with a
    float64 evaluation on the same (float32) gammas to 2e-6 relative: no cancellation."""
    g = np.asarray(polynomial_schedule().gamma(jnp.arange(1001, dtype=jnp.float32) / 1000))
    g_s, g_t = g[:-1].astype(np.float64), g[1:].astype(np.float64)
    ref = -np.expm1(-np.log1p(np.expm1(g_t - g_s) * _sigmoid(g_s)))
    np.testing.assert_allclose(ref, 1.0 - _sigmoid(-g_t) / _sigmoid(-g_s), rtol=1e-9)
    alpha_ts, sigma2_ts = transition_from_gammas(jnp.asarray(g[:-1]), jnp.asarray(g[1:]))
    assert sigma2_ts.dtype == jnp.float32
    assert np.max(np.abs(np.asarray(sigma2_ts) - ref) / ref) < 2e-6
    np.testing.assert_allclose(np.asarray(alpha_ts) ** 2, 1.0 - ref, rtol=1e-6)


def test_position_noise_is_the_com_free_normal_of_groups(key):
    """`sample_noise` on positions only is `groups.com_free_normal`: same key, same draw."""
    mask = jnp.array([[1, 1, 0, 1], [1, 1, 1, 1]], jnp.float32)
    a = sample_noise(key, (2, 4, 3), mask)
    b = com_free_normal(key, (2, 4, 3), mask)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
