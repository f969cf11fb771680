import math

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.models.embeddings import gaussian_basis, pairwise_distances, timestep_embedding


def test_pairwise_distances_values_and_finite_gradient_at_coincident_points():
    x = jnp.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    d = pairwise_distances(x)
    np.testing.assert_allclose(d, [[0, 5, 0], [5, 0, 5], [0, 5, 0]], atol=1e-6)
    grad = jax.grad(lambda y: pairwise_distances(y).sum())(x)
    assert np.all(np.isfinite(np.asarray(grad)))
    # d/dx_1 of 2 (|x_1 - x_0| + |x_1 - x_2|) = 4 (x_1 - 0) / 5.
    np.testing.assert_allclose(grad[1], 4 * np.array([3.0, 4.0, 0.0]) / 5, rtol=1e-6)


def test_gaussian_basis_is_the_normal_density_with_floored_width():
    d = jnp.array([0.5, 2.0])
    means, stds = jnp.array([0.0, 1.0]), jnp.array([-1.0, 0.5])
    got = gaussian_basis(d, means, stds)
    s = np.abs(np.asarray(stds)) + 0.01
    want = np.exp(-0.5 * ((np.asarray(d)[:, None] - np.asarray(means)) / s) ** 2) / (
        math.sqrt(2 * math.pi) * s
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_timestep_embedding_frequencies_and_odd_padding():
    t = jnp.array([0.0, 0.5])
    emb = timestep_embedding(t, 5, max_period=100.0)
    assert emb.shape == (2, 5)
    freqs = 100.0 ** (-np.arange(2) / 2)
    want = np.concatenate([np.cos(0.5 * freqs), np.sin(0.5 * freqs), [0.0]])
    np.testing.assert_allclose(emb[1], want, rtol=1e-6)
    np.testing.assert_allclose(emb[0], [1, 1, 0, 0, 0])
    assert timestep_embedding(jnp.array([3]), 4).dtype == jnp.float32
