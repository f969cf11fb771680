"""Graph-conditioned conformer networks: S_N x O(3) equivariance, exact and in distribution.

References are independent of the code under test: rotations from scipy, permutations from
numpy, and for the SymDiff network the energy two-sample test of
`assert_stochastically_equivariant` (false-alarm rate 1e-3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from rdkit import Chem
from scipy.spatial.transform import Rotation

from symdiff_jax.conformers.graphs import NUM_BOND_TYPES, molecule_arrays
from symdiff_jax.data.geom_features import GEOM_QM9_ELEMENTS
from symdiff_jax.groups import permute, rotate
from symdiff_jax.models.conformer_nets import (
    BondGraphEncoder,
    ConformerGraph,
    GraphEGNNNet,
    GraphSymDiffNet,
)
from symdiff_jax.models.denoisers import SymDiffDenoiser
from symdiff_jax.models.dit import DiT
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.models.gamma_net import GammaNet
from symdiff_jax.testing import assert_stochastically_equivariant, randomise_parameters

N = 10  # propan-2-ol (12 atoms with hydrogens) would be bigger; ethanol has 9, padded to 10


def _graph():
    arr = molecule_arrays(
        Chem.AddHs(Chem.MolFromSmiles("CCO")), elements=GEOM_QM9_ELEMENTS, max_atoms=N
    )
    mask = (np.arange(N) < arr["num_atoms"]).astype(np.float32)
    return (
        jnp.asarray(arr["atom_features"]),
        jnp.asarray(arr["bond_types"], jnp.int32),
        jnp.asarray(mask),
    )


def _x(mask, seed=0):
    x = np.random.default_rng(seed).normal(size=(N, 3)).astype(np.float32) * mask[:, None]
    x[: int(mask.sum())] -= x[: int(mask.sum())].mean(0)
    return jnp.asarray(x)


def _encoder(features, rngs):
    return BondGraphEncoder(features, 16, 8, 2, rngs=rngs)


def _egnn_net(features, seed=0):
    rngs = nnx.Rngs(seed)
    egnn = EGNN(
        8,
        hidden=16,
        num_layers=2,
        attention=True,
        tanh=True,
        edge_features=NUM_BOND_TYPES,
        rngs=rngs,
    )
    return randomise_parameters(
        GraphEGNNNet(_encoder(features, rngs), egnn), jax.random.key(seed + 5), 0.3
    )


def _symdiff_net(features, seed=0, symmetrise=True):
    rngs = nnx.Rngs(seed)
    dit = DiT(8, hidden=32, depth=1, heads=2, node_embed=16, num_gaussians=8, rngs=rngs)
    gamma = GammaNet(
        hidden=16,
        depth=1,
        heads=2,
        decoder_hidden=8,
        distance_embedding=dit.distance_embedding,
        rngs=rngs,
    )
    net = GraphSymDiffNet(_encoder(features, rngs), SymDiffDenoiser(dit, gamma))
    net = randomise_parameters(net, jax.random.key(seed + 7), 0.3)
    if symmetrise:
        return net

    class Plain(nnx.Module):  # the same DiT without the symmetrisation: not O(3)-equivariant
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, key, x, graph, t, mask):
            h = self.inner.encoder(graph.atom_features, graph.bond_types, mask)
            v, _ = self.inner.denoiser.eps_net(x, h, t, mask)
            return v

    return Plain(net)


def _act(perm, rot, x, features, bonds, mask):
    x = rotate(permute(x, perm), rot)
    features = permute(features, perm)
    bonds = bonds[perm][:, perm]
    return x, features, bonds, permute(mask, perm, axis=-1)


def _call(net, key, x, features, bonds, mask, t=0.4):
    graph = ConformerGraph(features[None], bonds[None])
    return net(key, x[None], graph, jnp.full((1,), t), mask[None])[0]


def test_bond_encoder_is_permutation_equivariant():
    features, bonds, mask = _graph()
    enc = randomise_parameters(_encoder(features.shape[-1], nnx.Rngs(0)), jax.random.key(1), 0.3)
    perm = jnp.asarray(np.r_[np.random.default_rng(1).permutation(9), 9])
    h = enc(features[None], bonds[None], mask[None])[0]
    hp = enc(permute(features, perm)[None], bonds[perm][:, perm][None], mask[None])[0]
    np.testing.assert_allclose(hp, permute(h, perm), atol=1e-5)
    assert float(jnp.abs(h[9:]).max()) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_egnn_net_is_exactly_equivariant(seed):
    """f(g.x, g.G) = g.f(x, G) for scipy rotations/reflections and numpy permutations."""
    features, bonds, mask = _graph()
    net = _egnn_net(features.shape[-1], seed)
    x = _x(np.asarray(mask), seed)
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix() * (-1 if seed else 1)
    perm = jnp.asarray(np.r_[rng.permutation(9), 9])
    key = jax.random.key(0)
    out = _call(net, key, x, features, bonds, mask)
    gx, gf, gb, gm = _act(perm, jnp.asarray(rot, jnp.float32), x, features, bonds, mask)
    out_g = _call(net, key, gx, gf, gb, gm)
    np.testing.assert_allclose(
        out_g, rotate(permute(out, perm), jnp.asarray(rot, jnp.float32)), atol=2e-4
    )
    assert float(jnp.abs(out).max()) > 1e-3  # not trivially zero
    np.testing.assert_allclose(out.sum(0), 0.0, atol=1e-4)  # CoM-free
    # The bonds matter: the same coordinates with another graph give another field.
    other = _call(net, key, x, features, jnp.zeros_like(bonds), mask)
    assert float(jnp.abs(other - out).max()) > 1e-3


def _kernel(net):
    graphdef, state = nnx.split(net)

    def kernel(key, s, mask):
        model = nnx.merge(graphdef, state)
        return _call(model, key, s["x"], s["atom_features"], s["bond_types"], mask)

    return kernel


def _state_act(g, s):
    x, f, b, _ = _act(g.perm, g.rotation, s["x"], s["atom_features"], s["bond_types"], jnp.ones(N))
    return {"x": x, "atom_features": f, "bond_types": b}


def _out_act(g, y):
    return rotate(permute(y, g.perm), g.rotation)


def _check_symdiff_net_in_distribution(key, symmetrise: bool):
    """The energy two-sample test of S_N x O(3) acting on coordinates and graph together."""
    features, bonds, mask = _graph()
    state = {"x": _x(np.asarray(mask), 3), "atom_features": features, "bond_types": bonds}
    assert_stochastically_equivariant(
        _kernel(_symdiff_net(features.shape[-1], symmetrise=symmetrise)),
        key,
        state,
        group="O3",
        mask=mask,
        num_samples=200,
        in_act=_state_act,
        out_act=_out_act,
    )


def test_symdiff_net_is_equivariant_in_distribution(key):
    """S_N x O(3) acting on coordinates and graph together. False-alarm rate 1e-3."""
    _check_symdiff_net_in_distribution(key, symmetrise=True)


def test_the_unsymmetrised_network_is_rejected(key):
    """The same test rejects the DiT without symmetrisation (the bug it guards against)."""
    with pytest.raises(AssertionError):
        _check_symdiff_net_in_distribution(key, symmetrise=False)
