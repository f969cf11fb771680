import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.conformers.graphs import ConformerGraph
from symdiff_jax.conformers.objectives import sample_prior
from symdiff_jax.conformers.sampling import sample_diffusion_conformers, sample_flow_conformers
from symdiff_jax.diffusion import get_schedule

B, N = 2, 5
MASK = jnp.array([[1.0, 1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0]])
# A chain bond graph (single bonds between neighbours), zero on padding.
_BONDS = np.zeros((B, N, N), np.int32)
for b, n in enumerate((4, 3)):
    for i in range(n - 1):
        _BONDS[b, i, i + 1] = _BONDS[b, i + 1, i] = 1
GRAPH = ConformerGraph(atom_features=jnp.zeros((B, N, 4)), bond_types=jnp.asarray(_BONDS))


def _com_free_target():
    """A fixed CoM-free configuration `[B, N, 3]`, zero on padding."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(B, N, 3)), jnp.float32) * MASK[..., None]
    com = x.sum(1, keepdims=True) / MASK.sum(1)[:, None, None]
    return (x - com) * MASK[..., None]


def test_flow_with_zero_velocity_returns_the_prior_draw(key):
    def net(k, x, graph, t, mask):
        return jnp.zeros_like(x)

    x, traj = sample_flow_conformers(net, key, GRAPH, MASK, num_steps=4, return_trajectory=True)
    prior = sample_prior(jax.random.split(key)[0], "harmonic", GRAPH.bond_types, MASK)
    assert traj.shape == (5, B, N, 3)
    np.testing.assert_allclose(np.asarray(traj[0]), np.asarray(prior), atol=1e-6)
    np.testing.assert_allclose(np.asarray(x), np.asarray(prior), atol=1e-5)


def test_flow_integrates_a_constant_velocity_over_unit_time(key):
    u = _com_free_target()

    def net(k, x, graph, t, mask):
        return u

    x = sample_flow_conformers(net, key, GRAPH, MASK, num_steps=8, prior="gaussian")
    prior = sample_prior(jax.random.split(key)[0], "gaussian", GRAPH.bond_types, MASK)
    np.testing.assert_allclose(np.asarray(x), np.asarray(prior + u), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(x)[MASK == 0], 0.0)
    np.testing.assert_allclose(np.asarray((x * MASK[..., None]).sum(1)), 0.0, atol=1e-5)


def test_diffusion_with_an_oracle_x0_network_returns_the_oracle(key):
    target = _com_free_target()

    def net(k, z, graph, t, mask):
        return target

    schedule = get_schedule("polynomial_2", num_steps=20, precision=1e-5)
    x = sample_diffusion_conformers(net, key, GRAPH, MASK, schedule, num_steps=20, prediction="x0")
    assert x.shape == (B, N, 3)
    np.testing.assert_allclose(np.asarray(x), np.asarray(target), atol=1e-4)


@pytest.mark.parametrize("prior", ["uniform"])
def test_flow_rejects_an_unknown_prior(key, prior):
    with pytest.raises(ValueError, match="prior must be one of"):
        sample_flow_conformers(lambda *a: a[1], key, GRAPH, MASK, num_steps=2, prior=prior)
