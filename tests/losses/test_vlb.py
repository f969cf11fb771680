"""VLB terms against independent float64 references (numpy / scipy), per example."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from symdiff_jax.diffusion import polynomial_schedule
from symdiff_jax.losses.vlb import (
    diffusion_weight,
    kl_prior,
    log_constants_x_given_z0,
    log_ph_given_z0,
    log_px_given_z0_without_constants,
    subspace_dimension,
)

MASK = np.array([[1, 1, 1, 1, 0], [1, 0, 1, 1, 1], [1, 1, 0, 0, 0]], np.float64)


def com_free_positions(rng, mask):
    x = rng.normal(size=mask.shape + (3,)) * mask[..., None]
    mean = x.sum(1, keepdims=True) / mask.sum(1, keepdims=True)[..., None]
    return (x - mean) * mask[..., None]


def orthonormal_basis_of_state_space(m, num_features):
    """Columns spanning {x CoM-free on the real atoms} x {h on the real atoms}, via numpy QR."""
    n = len(m)
    idx = np.flatnonzero(m)
    # Vectors of the state space (positions then features, row-major over atoms).
    vectors = []
    for i in idx[1:]:  # differences e_i - e_{idx0} span the CoM-free position space
        for c in range(3):
            v = np.zeros((n, 3 + num_features))
            v[i, c], v[idx[0], c] = 1.0, -1.0
            vectors.append(v.ravel())
    for i in idx:
        for c in range(num_features):
            v = np.zeros((n, 3 + num_features))
            v[i, 3 + c] = 1.0
            vectors.append(v.ravel())
    q, _ = np.linalg.qr(np.stack(vectors, 1))
    return q


def test_kl_prior_matches_multivariate_gaussian_kl_on_the_subspace(x64):
    rng = np.random.default_rng(0)
    num_features = 4
    x = com_free_positions(rng, MASK)
    h = rng.normal(size=MASK.shape + (num_features,)) * MASK[..., None]
    gamma_T = np.array([1.5, -0.7, 3.0])
    ours = np.asarray(kl_prior(jnp.asarray(x), jnp.asarray(h), jnp.asarray(MASK), gamma_T))
    for b in range(len(MASK)):
        basis = orthonormal_basis_of_state_space(MASK[b], num_features)
        k = basis.shape[1]
        alpha2 = 1.0 / (1.0 + np.exp(gamma_T[b]))
        sigma2 = 1.0 - alpha2
        mu = basis.T @ (np.sqrt(alpha2) * np.concatenate([x[b], h[b]], -1).ravel())
        cov_q = sigma2 * np.eye(k)
        # KL(N(mu, S) || N(0, I)) = 0.5 (tr S + mu^T mu - k - log det S)
        ref = 0.5 * (np.trace(cov_q) + mu @ mu - k - np.linalg.slogdet(cov_q)[1])
        assert ours[b] == pytest.approx(ref, rel=1e-10)


def test_log_constants_match_scipy_normal_density(x64):
    gamma_0 = np.array([-11.5, -5.0, 0.3])
    ours = np.asarray(log_constants_x_given_z0(jnp.asarray(MASK), jnp.asarray(gamma_0)))
    for b, g in enumerate(gamma_0):
        dof = (MASK[b].sum() - 1) * 3
        assert ours[b] == pytest.approx(dof * stats.norm.logpdf(0.0, scale=np.exp(g / 2)))
    assert np.allclose(np.asarray(subspace_dimension(jnp.asarray(MASK))), [9, 9, 3])


def test_position_likelihood_is_half_squared_error_over_real_atoms(x64):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2,) + MASK.shape + (3,))
    ours = log_px_given_z0_without_constants(jnp.asarray(a), jnp.asarray(b), jnp.asarray(MASK))
    ref = [
        -0.5 * sum(((a[i, j] - b[i, j]) ** 2).sum() for j in np.flatnonzero(MASK[i]))
        for i in range(3)
    ]
    assert np.allclose(np.asarray(ours), ref, rtol=1e-12)


@pytest.mark.parametrize("with_charges", [True, False])
def test_discretised_feature_likelihood_matches_scipy_loop(x64, with_charges):
    rng = np.random.default_rng(2)
    num_classes, scale_oh, scale_q = 5, 4.0, 10.0
    types = rng.integers(0, num_classes, size=MASK.shape)
    one_hot = np.eye(num_classes)[types] * MASK[..., None]
    charges = np.array([1, 6, 7, 8, 9])[types] * MASK
    z_h = np.concatenate(
        [one_hot / scale_oh, charges[..., None] / scale_q], -1
    ) + 0.05 * rng.normal(size=MASK.shape + (num_classes + 1,))
    gamma_0 = np.array([-6.0, -4.0, -8.0])
    ours = np.asarray(
        log_ph_given_z0(
            jnp.asarray(one_hot),
            jnp.asarray(charges) if with_charges else None,
            jnp.asarray(z_h if with_charges else z_h[..., :num_classes]),
            jnp.asarray(gamma_0),
            jnp.asarray(MASK),
        )
    )
    for b in range(len(MASK)):
        sigma0 = np.sqrt(1.0 / (1.0 + np.exp(-gamma_0[b])))
        total = 0.0
        for i in np.flatnonzero(MASK[b]):
            s = sigma0 * scale_oh
            masses = [
                stats.norm.cdf(1.5, loc=z_h[b, i, c] * scale_oh, scale=s)
                - stats.norm.cdf(0.5, loc=z_h[b, i, c] * scale_oh, scale=s)
                + 1e-10
                for c in range(num_classes)
            ]
            total += np.log(masses[types[b, i]]) - np.log(np.sum(masses))
            if with_charges:
                s = sigma0 * scale_q
                q = charges[b, i]
                mass = stats.norm.cdf(
                    q + 0.5, loc=z_h[b, i, -1] * scale_q, scale=s
                ) - stats.norm.cdf(q - 0.5, loc=z_h[b, i, -1] * scale_q, scale=s)
                total += np.log(mass + 1e-10)
        assert ours[b] == pytest.approx(total, rel=1e-7, abs=1e-9)


def test_diffusion_weight_is_the_snr_ratio_minus_one(x64):
    schedule = polynomial_schedule(1000)
    t = jnp.array([0.5, 0.9, 0.01])
    s = t - 1e-3
    ratio = schedule.snr(s) / schedule.snr(t) - 1.0
    ours = diffusion_weight(schedule.gamma(s), schedule.gamma(t))
    assert np.allclose(np.asarray(ours), np.asarray(ratio), rtol=1e-9)
    assert np.all(np.asarray(ours) > 0)
