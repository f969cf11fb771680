"""The symmetrised reverse-SDE sampler is O(3) x S_N-equivariant; the plain one is not."""

import jax
import jax.numpy as jnp
import pytest

from symdiff_jax.groups import com_free_normal, remove_com
from symdiff_jax.score_matching import prior_sample, reverse_sde_sample, ve_sde
from symdiff_jax.symmetrise import haar_gamma
from symdiff_jax.testing import assert_stochastically_equivariant

SDE = ve_sde(sigma_min=0.01, sigma_max=0.5)


def per_atom_net(x, t):
    """S_N-equivariant, not O(3)-equivariant: a fixed per-atom map x_i -> tanh(x_i W) A."""
    w = jnp.array([[2.0, -1.0, 0.5], [0.3, 1.5, -2.0], [1.0, 0.2, 1.0]])
    a = jnp.array([[3.0, 0.0, 1.0], [0.0, -2.0, 0.0], [1.0, 1.0, 4.0]])
    return remove_com(jnp.tanh(x @ w + t[..., None, None]) @ a * 20.0)


def sampler(gamma):
    def kernel(key, x):
        return reverse_sde_sample(key, x, per_atom_net, SDE, num_steps=4, gamma=gamma)

    return kernel


def test_symmetrised_sampler_is_equivariant(key):
    x = com_free_normal(jax.random.fold_in(key, 7), (5, 3))
    assert_stochastically_equivariant(sampler(haar_gamma("O3")), key, x, group="O3", alpha=1e-3)


def test_plain_sampler_is_not_equivariant(key):
    x = com_free_normal(jax.random.fold_in(key, 7), (5, 3))
    with pytest.raises(AssertionError):
        assert_stochastically_equivariant(sampler(None), key, x, group="O3", alpha=1e-3)


def test_prior_is_com_free(key):
    x = prior_sample(key, (10, 5, 3), SDE)
    assert jnp.abs(x.sum(axis=1)).max() < 1e-4
    assert abs(float(jnp.std(x)) - 0.5 * (4 / 5) ** 0.5) < 0.05
