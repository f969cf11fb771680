"""The symmetrised Euler sampler is O(2) x S_N-equivariant; the plain one is not."""

import jax
import jax.numpy as jnp
import pytest

from symdiff_jax.flow_matching import euler_sample, prior_sample
from symdiff_jax.groups import remove_com
from symdiff_jax.symmetrise import haar_gamma
from symdiff_jax.testing import assert_stochastically_equivariant


def per_atom_net(x, t):
    """S_N-equivariant, not O(2)-equivariant: a fixed per-atom map x_i -> tanh(x_i W) A."""
    w = jnp.array([[2.0, -1.0], [0.3, 1.5]])
    a = jnp.array([[3.0, 1.0], [0.0, -2.0]])
    return remove_com(jnp.tanh(x @ w + t[..., None, None]) @ a)


def sampler(gamma):
    def kernel(key, x):
        return euler_sample(key, x, per_atom_net, num_steps=4, gamma=gamma)

    return kernel


@pytest.mark.parametrize("group", ["O2", "SO2"])
def test_symmetrised_sampler_is_equivariant(key, group):
    x = prior_sample(jax.random.fold_in(key, 3), (4, 2))
    assert_stochastically_equivariant(sampler(haar_gamma(group)), key, x, group=group, alpha=1e-3)


def test_plain_sampler_is_not_equivariant(key):
    x = prior_sample(jax.random.fold_in(key, 3), (4, 2))
    with pytest.raises(AssertionError):
        assert_stochastically_equivariant(sampler(None), key, x, group="O2", alpha=1e-3)
