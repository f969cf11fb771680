"""Group actions on padded point clouds, checked against numpy and scipy references.

Statistical tests: the chi^2 uniformity test of random_permutation and the
covariance check of com_free_normal run at level 1e-3 (false-alarm rate at most
1e-3 for a given seed; seeds are fixed).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from scipy.spatial.transform import Rotation

from symdiff_jax.groups import (
    SNxO,
    act,
    com_free_normal,
    compose,
    identity,
    inverse,
    invert_permutation,
    masked_mean,
    masked_normal,
    permute,
    random_element,
    random_permutation,
    random_reflection,
    reflection,
    remove_com,
    rotate,
)

MASK = np.array([1, 0, 1, 1, 0, 1, 1], np.float32)  # 5 real atoms, padding in between


def padded_cloud(seed=0, d=3):
    x = np.random.default_rng(seed).normal(size=(MASK.size, d))
    return x * MASK[:, None]


def test_rotate_matches_scipy(x64):
    rots = Rotation.random(4, random_state=0)
    x = np.random.default_rng(1).normal(size=(4, 6, 3))
    expected = np.stack([rots[i].apply(x[i]) for i in range(4)])
    np.testing.assert_allclose(
        rotate(jnp.asarray(x), jnp.asarray(rots.as_matrix())), expected, atol=1e-12
    )
    # One rotation broadcasts over a batch of clouds.
    np.testing.assert_allclose(
        rotate(jnp.asarray(x), jnp.asarray(rots[0].as_matrix())),
        rots[0].apply(x.reshape(-1, 3)).reshape(x.shape),
        atol=1e-12,
    )


def test_rotate_shape_errors():
    with pytest.raises(ValueError, match="3, 3"):
        rotate(jnp.zeros((5, 3)), jnp.eye(2))
    with pytest.raises(ValueError, match="point cloud"):
        rotate(jnp.zeros((3,)), jnp.eye(3))


def test_remove_com_matches_numpy(x64):
    x = padded_cloud() + 3.0 * MASK[:, None]
    real = MASK > 0
    expected = np.zeros_like(x)
    expected[real] = x[real] - x[real].mean(0)
    out = np.asarray(remove_com(jnp.asarray(x), jnp.asarray(MASK)))
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_array_equal(out[~real], 0.0)
    np.testing.assert_allclose(remove_com(jnp.asarray(out), jnp.asarray(MASK)), out, atol=1e-12)
    np.testing.assert_allclose(
        masked_mean(jnp.asarray(x), jnp.asarray(MASK))[0], x[real].mean(0), atol=1e-12
    )


def test_com_free_normal_support_and_covariance(x64):
    """Per coordinate, the real-atom block has covariance I - 11^T / n (projection onto U).

    Each entry of the empirical covariance (M samples) is compared with the
    projection at 4.5 standard errors (Var of a product of two unit-variance
    normals is at most 2), Bonferroni over the 25 entries at level 1e-3.
    """
    m = 40_000
    eps = np.asarray(com_free_normal(jax.random.key(0), (m, MASK.size, 3), jnp.asarray(MASK)))
    np.testing.assert_array_equal(eps[:, MASK == 0], 0.0)
    np.testing.assert_allclose(eps.sum(axis=1), 0.0, atol=1e-10)
    real = eps[:, MASK > 0, 0]
    n = real.shape[1]
    cov = real.T @ real / m
    proj = np.eye(n) - np.ones((n, n)) / n
    z = np.abs(cov - proj) / np.sqrt(2.0 / m)
    assert z.max() < st.norm.isf(1e-3 / (2 * n * n)), z.max()


def test_masked_normal_support():
    h = masked_normal(jax.random.key(0), (MASK.size, 4), jnp.asarray(MASK))
    np.testing.assert_array_equal(np.asarray(h)[MASK == 0], 0.0)
    assert np.all(np.asarray(h)[MASK > 0] != 0)


def test_random_permutation_fixes_padding_and_is_a_bijection():
    perms = np.asarray(
        jax.vmap(lambda k: random_permutation(k, jnp.asarray(MASK)))(
            jax.random.split(jax.random.key(0), 500)
        )
    )
    pad = np.flatnonzero(MASK == 0)
    np.testing.assert_array_equal(perms[:, pad], np.broadcast_to(pad, (500, pad.size)))
    np.testing.assert_array_equal(
        np.sort(perms, axis=1), np.broadcast_to(np.arange(MASK.size), perms.shape)
    )
    np.testing.assert_array_equal(MASK[perms], np.broadcast_to(MASK, perms.shape))


def test_random_permutation_is_uniform_on_real_atoms():
    """chi^2 goodness of fit over all 4! permutations of 4 real atoms, level 1e-3."""
    mask = jnp.asarray([0, 1, 1, 0, 1, 1], jnp.float32)
    real = np.flatnonzero(np.asarray(mask) > 0)
    num = 24_000
    perms = np.asarray(
        jax.vmap(lambda k: random_permutation(k, mask))(jax.random.split(jax.random.key(1), num))
    )
    index = {p: i for i, p in enumerate(itertools.permutations(real.tolist()))}
    counts = np.zeros(len(index))
    for row in map(tuple, perms[:, real].tolist()):
        counts[index[row]] += 1
    assert st.chisquare(counts).pvalue > 1e-3


def test_uniformity_check_catches_biased_permutations():
    """The chi^2 check rejects a sampler that never moves the first real atom."""
    real = [1, 2, 4, 5]
    rng = np.random.default_rng(0)
    index = {p: i for i, p in enumerate(itertools.permutations(real))}
    counts = np.zeros(len(index))
    for _ in range(24_000):
        counts[index[(1, *rng.permutation(real[1:]).tolist())]] += 1
    assert st.chisquare(counts).pvalue < 1e-3


def test_permute_matches_numpy_indexing():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 7, 3))
    perm = rng.permutation(7)
    np.testing.assert_allclose(permute(jnp.asarray(a), jnp.asarray(perm)), a[:, perm], rtol=1e-6)
    m = rng.normal(size=(2, 7))
    np.testing.assert_allclose(
        permute(jnp.asarray(m), jnp.asarray(perm), axis=-1), m[:, perm], rtol=1e-6
    )
    inv = invert_permutation(jnp.asarray(perm))
    np.testing.assert_allclose(
        permute(permute(jnp.asarray(a), jnp.asarray(perm)), inv), a, rtol=1e-6
    )
    with pytest.raises(ValueError):
        permute(jnp.asarray(a), jnp.arange(5))


def _scipy_element(seed, n):
    rng = np.random.default_rng(seed)
    r = Rotation.random(random_state=rng).as_matrix() * rng.choice([-1.0, 1.0])
    return rng.permutation(n), r


def test_act_matches_scipy(x64):
    n = 7
    perm, r = _scipy_element(0, n)
    x = padded_cloud(1)
    h = np.random.default_rng(2).normal(size=(n, 4))
    g = SNxO(jnp.asarray(perm), jnp.asarray(r))
    x_out, h_out, m_out = act(g, jnp.asarray(x), jnp.asarray(h), jnp.asarray(MASK))
    np.testing.assert_allclose(x_out, x[perm] @ r.T, atol=1e-12)
    np.testing.assert_allclose(
        x_out,
        np.sign(np.linalg.det(r)) * Rotation.from_matrix(r * np.linalg.det(r)).apply(x[perm]),
        atol=1e-12,
    )
    np.testing.assert_allclose(h_out, h[perm], atol=1e-12)
    np.testing.assert_allclose(m_out, MASK[perm])
    assert act(g, jnp.asarray(x))[1:] == (None, None)


def test_compose_inverse_identity(x64):
    n = 7
    g1 = SNxO(*map(jnp.asarray, _scipy_element(1, n)))
    g2 = SNxO(*map(jnp.asarray, _scipy_element(2, n)))
    x = jnp.asarray(padded_cloud(3))
    h = jnp.asarray(np.random.default_rng(4).normal(size=(n, 2)))
    lhs = act(compose(g1, g2), x, h)
    rhs = act(g1, *act(g2, x, h)[:2])
    np.testing.assert_allclose(lhs[0], rhs[0], atol=1e-12)
    np.testing.assert_allclose(lhs[1], rhs[1], atol=1e-12)
    e = identity(n, dtype=jnp.float64)
    for g in (compose(g1, inverse(g1)), compose(inverse(g1), g1)):
        np.testing.assert_array_equal(g.perm, e.perm)
        np.testing.assert_allclose(g.rotation, e.rotation, atol=1e-12)
    np.testing.assert_allclose(act(inverse(g1), *act(g1, x, h)[:2])[0], x, atol=1e-12)
    np.testing.assert_allclose(act(e, x, h)[0], x)


def test_random_element_respects_mask():
    g = random_element(jax.random.key(0), jnp.asarray(MASK))
    np.testing.assert_array_equal(MASK[np.asarray(g.perm)], MASK)
    np.testing.assert_allclose(g.rotation @ g.rotation.T, np.eye(3), atol=1e-5)
    s = random_element(jax.random.key(0), jnp.asarray(MASK), special=True)
    assert np.linalg.det(np.asarray(s.rotation)) > 0


def test_reflections(x64):
    normal = jnp.asarray([1.0, -2.0, 0.5])
    r = np.asarray(reflection(normal))
    np.testing.assert_allclose(r, r.T, atol=1e-12)
    np.testing.assert_allclose(r @ r, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), -1.0, atol=1e-12)
    np.testing.assert_allclose(r @ np.asarray(normal), -np.asarray(normal), atol=1e-12)
    rr = np.asarray(random_reflection(jax.random.key(0), 3, (5,)))
    np.testing.assert_allclose(np.linalg.det(rr), -1.0, atol=1e-10)
