"""Graph-conditioned networks of conformer generation: `net(key, x, graph, t, mask) -> [B, N, 3]`.

The molecular graph (atom features and bond types, `ConformerGraph`) is the condition; the
output is a centre-of-mass-free vector field on the coordinates (a flow-matching velocity,
or a diffusion eps / x0, depending on the objective). Two kinds:

- `GraphEGNNNet`: an E(3) x S_N-equivariant EGNN whose edge inputs include the one-hot bond
  types, with node features from a `BondGraphEncoder` (the ETFlow/ETDiff family uses an
  equivariant transformer; an EGNN is the equivariant network of this library).
- `GraphSymDiffNet`: the SymDiff construction (paper 002): a DiT that sees the bond-graph
  node features, made O(3) (or SO(3)) x S_N-equivariant in distribution by stochastic
  symmetrisation with the learned gamma (or Haar).

Both are S_N-equivariant: the graph encoder is message passing over bonds, with no atom
index anywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.conformers.graphs import NUM_BOND_TYPES, ConformerGraph, bond_one_hot
from symdiff_jax.groups import remove_com
from symdiff_jax.models.denoisers import SymDiffDenoiser
from symdiff_jax.models.egnn import EGNN

Array = jax.Array

__all__ = [
    "BondGraphEncoder",
    "ConformerGraph",
    "GraphEGNNNet",
    "GraphSymDiffNet",
]


class BondGraphEncoder(nnx.Module):
    """Node embeddings of a molecular graph by message passing over typed bonds.

    `h^0 = W_in a`, then `num_layers` times
    `h_i <- h_i + MLP([h_i, sum_b sum_j A^b_ij h_j W_b])` with `A^b` the adjacency of
    bond type b (single, double, triple, aromatic); `out = W_out h`. Exactly
    S_N-equivariant, zero on padded atoms.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        num_layers: int = 3,
        *,
        rngs: nnx.Rngs,
    ):
        self.embed = nnx.Linear(in_features, hidden, rngs=rngs)
        self.messages = nnx.List(
            [nnx.Linear(NUM_BOND_TYPES * hidden, hidden, rngs=rngs) for _ in range(num_layers)]
        )
        self.updates = nnx.List(
            [
                nnx.Sequential(
                    nnx.Linear(2 * hidden, hidden, rngs=rngs),
                    nnx.silu,
                    nnx.Linear(hidden, hidden, rngs=rngs),
                )
                for _ in range(num_layers)
            ]
        )
        self.out = nnx.Linear(hidden, out_features, rngs=rngs)

    def __call__(self, atom_features: Array, bond_types: Array, mask: Array) -> Array:
        m = mask.astype(atom_features.dtype)[..., None]
        adjacency = bond_one_hot(bond_types) * m[..., :, None, :] * m[..., None, :, :]
        h = self.embed(atom_features) * m
        for message, update in zip(self.messages, self.updates, strict=True):
            per_type = jnp.einsum("...ijb,...jh->...ibh", adjacency, h)
            msg = message(per_type.reshape(*per_type.shape[:-2], -1))
            h = (h + update(jnp.concatenate([h, msg], axis=-1))) * m
        return self.out(h) * m


def _time(t: Array, batch: int, dtype) -> Array:
    return jnp.broadcast_to(jnp.asarray(t, dtype).reshape(-1), (batch,))


class GraphEGNNNet(nnx.Module):
    """EGNN over all atom pairs with bond-type edge inputs; output `x_out - x` (CoM-free)."""

    def __init__(self, encoder: BondGraphEncoder, egnn: EGNN):
        if egnn.edge_features != NUM_BOND_TYPES:
            raise ValueError(
                f"GraphEGNNNet needs an EGNN with edge_features={NUM_BOND_TYPES} (one-hot bond "
                f"types); got {egnn.edge_features}."
            )
        self.encoder = encoder
        self.egnn = egnn

    def __call__(self, key: Array, x: Array, graph: ConformerGraph, t: Array, mask: Array):
        del key
        h = self.encoder(graph.atom_features, graph.bond_types, mask)
        t = _time(t, x.shape[0], x.dtype)
        x_out, _ = self.egnn(x, h, mask, t, edge_attr=bond_one_hot(graph.bond_types))
        m = mask.astype(x.dtype)[..., None]
        return remove_com((x_out - x) * m, mask)


class GraphSymDiffNet(nnx.Module):
    """SymDiff (paper 002, eq. 14) on a DiT conditioned on the bond-graph embeddings.

    `v = R . f_theta(R^T . x, h_G, t)` with `R ~ gamma(. | x, h_G)` and `h_G` the
    `BondGraphEncoder` embedding; only the coordinate output is used.
    """

    def __init__(self, encoder: BondGraphEncoder, denoiser: SymDiffDenoiser):
        self.encoder = encoder
        self.denoiser = denoiser

    def __call__(self, key: Array, x: Array, graph: ConformerGraph, t: Array, mask: Array):
        h = self.encoder(graph.atom_features, graph.bond_types, mask)
        v, _ = self.denoiser(key, x, h, _time(t, x.shape[0], x.dtype), mask)
        return v
