"""The harmonic prior of a bond graph and the Kabsch coupling, against numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from symdiff_jax.conformers.prior import align_prior, gaussian_prior, harmonic_prior


def _chain(n_real: int, n_pad: int) -> tuple[np.ndarray, np.ndarray]:
    n = n_real + n_pad
    bonds = np.zeros((n, n), np.int32)
    for i in range(n_real - 1):
        bonds[i, i + 1] = bonds[i + 1, i] = 1 + (i % 4)  # any bond code counts as one bond
    bonds[0, 2] = bonds[2, 0] = 2  # a ring closure
    mask = (np.arange(n) < n_real).astype(np.float32)
    return bonds, mask


def test_harmonic_covariance_is_the_laplacian_pseudo_inverse():
    """Cov of each coordinate = pinv(L) of the real atoms (numpy); padded atoms stay 0.

    20,000 draws: the standard error of a covariance entry is < 0.01 here; tolerance 0.04
    (false alarms negligible).
    """
    bonds, mask = _chain(5, 2)
    draws = jax.vmap(lambda k: harmonic_prior(k, jnp.asarray(bonds), jnp.asarray(mask)))(
        jax.random.split(jax.random.key(0), 20_000)
    )
    draws = np.asarray(draws)
    assert np.abs(draws[:, 5:]).max() == 0.0
    np.testing.assert_allclose(draws[:, :5].sum(1), 0.0, atol=1e-4)  # CoM-free
    a = (bonds[:5, :5] > 0).astype(float)
    expected = np.linalg.pinv(np.diag(a.sum(1)) - a)
    for d in range(3):
        np.testing.assert_allclose(np.cov(draws[:, :5, d].T), expected, atol=0.04)
    # A planted bug (the adjacency instead of the Laplacian) would not match.
    assert np.abs(np.linalg.pinv(a) - expected).max() > 0.1


def test_disconnected_graph_is_finite_and_components_spread():
    n = 6
    bonds = np.zeros((n, n), np.int32)
    bonds[0, 1] = bonds[1, 0] = bonds[3, 4] = bonds[4, 3] = 1
    mask = np.ones(n, np.float32)
    x = jax.vmap(lambda k: harmonic_prior(k, jnp.asarray(bonds), jnp.asarray(mask)))(
        jax.random.split(jax.random.key(1), 4000)
    )
    assert np.isfinite(np.asarray(x)).all()
    # The isolated atoms 2 and 5 are not pinned to anything: variance well above a bond's.
    assert float(jnp.var(x[:, 2, 0])) > 0.5


def test_gaussian_prior_is_com_free_and_masked():
    mask = jnp.array([1.0, 1.0, 1.0, 0.0])
    x = gaussian_prior(jax.random.key(2), mask)
    np.testing.assert_allclose(np.asarray(x[:3].sum(0)), 0.0, atol=1e-5)
    assert float(jnp.abs(x[3]).max()) == 0.0


def test_gaussian_prior_is_float32_by_default_and_takes_a_dtype(x64):
    mask = jnp.array([1.0, 1.0, 0.0], jnp.float32)
    assert gaussian_prior(jax.random.key(2), mask).dtype == jnp.float32
    x = gaussian_prior(jax.random.key(2), mask, jnp.float64)
    assert x.dtype == jnp.float64 and float(jnp.abs(x[2]).max()) == 0.0


def test_align_prior_matches_scipy_kabsch():
    """The rotated prior equals scipy's best rotation of the centred prior onto the data."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(7, 3))
    prior = rng.normal(size=(7, 3))
    mask = np.ones(7, np.float32)
    mask[6] = 0.0
    data[6] = prior[6] = 0.0
    out = np.asarray(
        align_prior(
            jnp.asarray(prior, jnp.float32), jnp.asarray(data, jnp.float32), jnp.asarray(mask)
        )
    )
    p = prior[:6] - prior[:6].mean(0)
    d = data[:6] - data[:6].mean(0)
    rot, _ = Rotation.align_vectors(d, p)
    np.testing.assert_allclose(out[:6], rot.apply(p), atol=1e-4)
    assert np.abs(out[6]).max() == 0.0
