"""assert_equivariant and assert_stochastically_equivariant pass on equivariant
functions/kernels and raise on non-equivariant ones.

False-alarm rate: every `assert_stochastically_equivariant` call below runs at
alpha = 1e-3 (exact permutation tests, Bonferroni over the group elements), so
a call on an equivariant kernel fails with probability at most 1e-3 for a
random seed; seeds are fixed, so the outcomes are reproducible.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.groups import haar_o3
from symdiff_jax.testing import (
    act_on_atom_features,
    act_on_rotation,
    assert_equivariant,
    assert_stochastically_equivariant,
    sample_test_element,
)

ALPHA = 1e-3
MASK = jnp.asarray([1, 1, 0, 1, 1, 0], jnp.float32)


def cloud(seed=0, n=6):
    return jax.random.normal(jax.random.key(seed), (n, 3))


def padded_cloud(seed=0):
    return cloud(seed) * MASK[:, None]


# ----------------------------------------------------------------------------- deterministic


def norm_scaled(x):
    return x * jnp.linalg.norm(x, axis=-1, keepdims=True)


def pairwise_weighted(x, mask=None):
    """x_i' = sum_j m_j exp(-|x_i - x_j|^2) (x_i - x_j): S_N x O(3)-equivariant."""
    m = jnp.ones(x.shape[:-1]) if mask is None else mask
    diff = x[..., :, None, :] - x[..., None, :, :]
    w = jnp.exp(-jnp.sum(diff**2, -1)) * m[..., None, :] * m[..., :, None]
    return jnp.sum(w[..., None] * diff, axis=-2)


def test_passes_on_equivariant_functions():
    x = cloud()
    assert_equivariant(norm_scaled, jax.random.key(0), x)
    assert_equivariant(norm_scaled, jax.random.key(0), x, reference="scipy")
    assert_equivariant(pairwise_weighted, jax.random.key(1), padded_cloud(), mask=MASK)
    assert_equivariant(norm_scaled, jax.random.key(2), x[:, :2], group="O2")


def test_passes_on_states_invariants_and_argnums(x64):
    x, h = cloud(1), jax.random.normal(jax.random.key(9), (6, 4))

    def state_fn(state, t):
        x, h = state
        r = jnp.linalg.norm(x, axis=-1, keepdims=True)
        return (x * (r + t), h * r)

    assert_equivariant(state_fn, jax.random.key(3), (x, h), 0.5, atol=1e-10, rtol=1e-10)
    assert_equivariant(
        lambda s: {"x": norm_scaled(s["x"]), "h": s["h"] + 1}, jax.random.key(3), {"x": x, "h": h}
    )
    distances = lambda x: jnp.sum(jnp.linalg.norm(x[:, None] - x[None], axis=-1))  # noqa: E731
    assert_equivariant(distances, jax.random.key(4), x, invariant=True)
    radii = lambda x: jnp.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    assert_equivariant(radii, jax.random.key(5), x, out_act=act_on_atom_features)
    assert_equivariant(lambda t, x: t * x, jax.random.key(6), 2.0, x, argnums=1)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x + jnp.asarray([1.0, 0.0, 0.0]),
        lambda x: x @ jnp.asarray([[1.0, 0.3, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]]),
        lambda x: x - x[0],  # O(3)-equivariant, but not S_N-equivariant
    ],
    ids=["translate", "linear", "first_atom"],
)
def test_raises_on_non_equivariant_functions(fn):
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(fn, jax.random.key(0), cloud())


def test_permutations_flag_and_invariance_flag():
    assert_equivariant(lambda x: x - x[0], jax.random.key(0), cloud(), permutations=False)
    with pytest.raises(AssertionError, match="not invariant"):
        assert_equivariant(norm_scaled, jax.random.key(0), cloud(), invariant=True)


def test_so3_versus_o3():
    """A pseudovector (cross product) is SO(3)- but not O(3)-equivariant."""

    def cross(x):
        c = jnp.sum(jnp.sum(x**2, -1, keepdims=True) * x, axis=0)
        return jnp.cross(x, c)

    assert_equivariant(cross, jax.random.key(0), cloud(), group="SO3")
    with pytest.raises(AssertionError):
        # Five trials: each draws a reflection with probability 1/2.
        assert_equivariant(cross, jax.random.key(0), cloud(), group="O3", num_trials=5)


def test_padding_is_never_moved():
    g = sample_test_element(jax.random.key(0), 6, mask=MASK)
    np.testing.assert_array_equal(np.asarray(g.perm)[np.asarray(MASK) == 0], [2, 5])
    g = sample_test_element(jax.random.key(0), 6, mask=MASK, reference="scipy")
    np.testing.assert_array_equal(np.asarray(g.perm)[np.asarray(MASK) == 0], [2, 5])
    np.testing.assert_allclose(g.rotation @ g.rotation.T, np.eye(3), atol=1e-6)


def test_clear_errors():
    with pytest.raises(ValueError, match="Unknown group"):
        assert_equivariant(norm_scaled, jax.random.key(0), cloud(), group="E3")
    with pytest.raises(ValueError, match="dimension 3"):
        assert_equivariant(norm_scaled, jax.random.key(0), cloud()[:, :2])
    with pytest.raises(ValueError, match="reference"):
        assert_equivariant(norm_scaled, jax.random.key(0), cloud(), reference="numpy")


# ----------------------------------------------------------------------------- stochastic

ANISO = jnp.diag(jnp.asarray([1.0, 0.3, 0.3]))


def isotropic(key, x, mask=None):
    eps = jax.random.normal(key, x.shape)
    return x + 0.5 * (eps if mask is None else eps * mask[:, None])


def anisotropic(key, x):
    return x + jax.random.normal(key, x.shape) @ ANISO


def offset(key, x):
    return x + jnp.asarray([0.5, 0.0, 0.0]) + jax.random.normal(key, x.shape)


def test_stochastic_passes_on_isotropic_noise():
    """Isotropic Gaussian noise around x is S_N x O(3)-equivariant (alpha = 1e-3)."""
    results = assert_stochastically_equivariant(isotropic, jax.random.key(0), cloud(), alpha=ALPHA)
    assert len(results) == 3 and all(r.pvalue > ALPHA / 3 for r in results)
    assert_stochastically_equivariant(
        isotropic, jax.random.key(1), padded_cloud(), mask=MASK, reference="scipy", alpha=ALPHA
    )


@pytest.mark.parametrize("kernel", [anisotropic, offset], ids=["anisotropic", "offset"])
def test_stochastic_raises_on_non_equivariant_kernels(kernel):
    """Anisotropic noise or a fixed offset is caught: the assertion raises (alpha = 1e-3)."""
    with pytest.raises(AssertionError, match="p-value"):
        assert_stochastically_equivariant(kernel, jax.random.key(0), cloud(), alpha=ALPHA)


def test_stochastic_invariant_and_group_valued_kernels():
    """Invariant outputs (invariant=True) and kernels to the group (act_on_rotation), alpha = 1e-3."""

    def radii(key, x):
        return jnp.linalg.norm(x, axis=-1) @ jnp.ones(6) + jax.random.normal(key, ())

    assert_stochastically_equivariant(radii, jax.random.key(2), cloud(), invariant=True)

    def haar(key, x):
        return haar_o3(key)

    assert_stochastically_equivariant(haar, jax.random.key(3), cloud(), out_act=act_on_rotation)

    def near_identity(key, x):
        return haar_o3(key) * 0.1 + jnp.eye(3)

    with pytest.raises(AssertionError):
        assert_stochastically_equivariant(
            near_identity, jax.random.key(3), cloud(), out_act=act_on_rotation
        )


def test_stochastic_settings_are_checked():
    with pytest.raises(ValueError, match="never reject"):
        assert_stochastically_equivariant(
            isotropic, jax.random.key(0), cloud(), num_permutations=99
        )
    with pytest.raises(ValueError, match="alpha"):
        assert_stochastically_equivariant(isotropic, jax.random.key(0), cloud(), alpha=0.0)
