"""symmetrise (SymDiff, paper 002, Theorem 1) with the Haar base case.

Mechanics are checked exactly against a by-hand numpy computation; the theorem
is checked in distribution: a deliberately non-equivariant (but S_N-equivariant)
kernel fails `assert_stochastically_equivariant` and its symmetrisation passes.

False-alarm rate: each `assert_stochastically_equivariant` call runs at
alpha = 1e-3 (exact permutation tests, Bonferroni over 3 group elements), so an
equivariant kernel fails a call with probability at most 1e-3 for a random
seed; the seeds are fixed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from symdiff_jax.symmetrise import (
    as_kernel,
    get_positions,
    haar_gamma,
    rotate_positions,
    symmetrise,
)
from symdiff_jax.testing import assert_equivariant, assert_stochastically_equivariant
from tests.symmetrise.clouds import ALPHA, MASK, A, cloud, linear_kernel


def test_non_equivariant_kernel_fails():
    with pytest.raises(AssertionError, match="p-value"):
        assert_stochastically_equivariant(
            linear_kernel, jax.random.key(0), cloud(), mask=MASK, alpha=ALPHA
        )


@pytest.mark.parametrize("group", ["O3", "SO3"])
def test_haar_symmetrised_kernel_passes(group):
    """Theorem 1 with gamma = Haar: sym(k) is S_N x G-equivariant in distribution."""
    kernel = symmetrise(linear_kernel, haar_gamma(group))
    assert_stochastically_equivariant(
        kernel, jax.random.key(1), cloud(), group=group, mask=MASK, alpha=ALPHA
    )


def test_non_equivariant_gamma_is_not_enough():
    """With gamma = identity (not an equivariant base case) sym(k) = k still fails."""
    kernel = symmetrise(linear_kernel, lambda key, x, **kw: jnp.eye(3))
    with pytest.raises(AssertionError):
        assert_stochastically_equivariant(
            kernel, jax.random.key(2), cloud(), mask=MASK, alpha=ALPHA
        )


def test_matches_hand_computation(x64):
    """sym(k)(key, x) = g . k(key2, g^T . x) with g = gamma(key1, x), keys from split(key)."""
    q = jnp.asarray(Rotation.random(random_state=0).as_matrix())
    gamma = lambda key, x, t, mask=None: q  # noqa: E731
    seen = {}

    def kernel(key, x, t, mask=None):
        seen["t"], seen["mask"] = t, mask
        return x @ A + t * jax.random.normal(key, x.shape)

    x = cloud(1)
    key = jax.random.key(5)
    y, g = symmetrise(kernel, gamma, return_group=True)(key, x, 0.7, mask=MASK)
    key_kernel = jax.random.split(key)[1]
    xn, qn = np.asarray(x), np.asarray(q)
    noise = np.asarray(jax.random.normal(key_kernel, x.shape))
    expected = ((xn @ qn) @ np.asarray(A) + 0.7 * noise) @ qn.T
    np.testing.assert_allclose(y, expected, atol=1e-12)
    np.testing.assert_allclose(g, qn)
    assert seen["t"] == 0.7 and seen["mask"] is MASK


def test_states_rotate_positions_only(x64):
    q = jnp.asarray(Rotation.random(random_state=1).as_matrix())
    x, h = cloud(2), jnp.arange(12.0).reshape(6, 2)

    def kernel(key, state):
        x, h = get_positions(state), state["h"] if isinstance(state, dict) else state[1]
        out = (x @ A, h + jnp.sum(x[:, :1]))
        return {"x": out[0], "h": out[1]} if isinstance(state, dict) else out

    gamma = lambda key, state: q  # noqa: E731
    y_tuple = symmetrise(kernel, gamma)(jax.random.key(0), (x, h))
    y_dict = symmetrise(kernel, gamma)(jax.random.key(0), {"x": x, "h": h})
    xr = np.asarray(x) @ np.asarray(q)
    np.testing.assert_allclose(y_tuple[0], (xr @ np.asarray(A)) @ np.asarray(q).T, atol=1e-12)
    np.testing.assert_allclose(y_tuple[1], np.asarray(h) + xr[:, 0].sum(), atol=1e-12)
    np.testing.assert_allclose(y_dict["x"], y_tuple[0], atol=1e-12)
    np.testing.assert_allclose(y_dict["h"], y_tuple[1], atol=1e-12)
    with pytest.raises(ValueError, match="'x'"):
        rotate_positions({"pos": x}, q)


def test_equivariant_kernel_is_unchanged(x64):
    """If k is already O(3)-equivariant and deterministic, sym(k)(x) = k(x) for every g."""

    def fn(x):
        return x * jnp.linalg.norm(x, axis=-1, keepdims=True) + jnp.mean(x, axis=0)

    kernel = symmetrise(as_kernel(fn), haar_gamma())
    x = cloud(3)
    for seed in range(3):
        np.testing.assert_allclose(kernel(jax.random.key(seed), x), fn(x), atol=1e-12)


def test_symmetrised_function_is_deterministically_equivariant_for_equivariant_input():
    """assert_equivariant on sym(k) with a fixed key holds when k is equivariant (smoke)."""
    kernel = symmetrise(as_kernel(lambda x: x * jnp.sum(x**2)), haar_gamma())
    assert_equivariant(lambda x: kernel(jax.random.key(0), x), jax.random.key(1), cloud())


def test_jit_vmap_and_batches():
    kernel = jax.jit(symmetrise(linear_kernel, haar_gamma(), return_group=True))
    keys = jax.random.split(jax.random.key(0), 4)
    ys, gs = jax.vmap(kernel, in_axes=(0, None))(keys, cloud())
    assert ys.shape == (4, 6, 3) and gs.shape == (4, 3, 3)
    batch = jnp.stack([cloud(i) for i in range(4)])
    y, rotations = kernel(jax.random.key(1), batch)
    assert y.shape == (4, 6, 3) and rotations.shape == (4, 3, 3)
    assert not np.allclose(rotations[0], rotations[1])


def test_haar_gamma_dtype_and_errors(x64):
    r = haar_gamma("SO3")(jax.random.key(0), jnp.zeros((5, 3)))
    assert r.dtype == jnp.float64 and np.linalg.det(np.asarray(r)) == pytest.approx(1.0)
    assert haar_gamma("O2")(jax.random.key(0), jnp.zeros((5, 2), jnp.float32)).dtype == jnp.float32
    with pytest.raises(ValueError, match="Unknown group"):
        haar_gamma("E3")
    with pytest.raises(ValueError, match=r"\[..., N, 3\]"):
        haar_gamma("O3")(jax.random.key(0), jnp.zeros((5, 2)))
