"""Builds the molecule denoiser of a config (`config.model`), for every paper variant.

`model.kind`:
  - "dit": a plain DiT (`dit`, and `dit_aug` with augmentation in the loss);
  - "symdiff_h": the DiT symmetrised with gamma = Haar (SymDiff-H);
  - "symdiff": the DiT symmetrised with the learned gamma (SymDiff, SymDiff*);
  - "edm": EDM's EGNN dynamics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.models.denoisers import DiTDenoiser, EGNNDenoiser, SymDiffDenoiser
from symdiff_jax.models.dit import DiT
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.models.gamma_net import GammaNet

KINDS = ("dit", "symdiff_h", "symdiff", "edm")
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def build_dit(m, num_features: int, rngs: nnx.Rngs, n_dims: int = 3) -> DiT:
    """The eps-network `eps_theta` from `model.{hidden, depth, heads, ...}`, for point
    clouds in `n_dims` dimensions with `num_features` atom features."""
    return DiT(
        num_features,
        hidden=m.hidden,
        depth=m.depth,
        heads=m.heads,
        mlp_ratio=m.mlp_ratio,
        node_embed=m.node_embed,
        num_gaussians=m.num_gaussians,
        n_dims=n_dims,
        mlp=m.mlp,
        rngs=rngs,
        dtype=compute_dtype(m),
    )


def compute_dtype(m):
    """`model.compute_dtype` as the `dtype` of the DiT matmuls: None for float32 (full
    precision), `jnp.bfloat16` for mixed precision (float32 weights and accumulation)."""
    name = m.get("compute_dtype", "float32")
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"model.compute_dtype must be one of {sorted(COMPUTE_DTYPES)}; got {name!r}."
        )
    return COMPUTE_DTYPES[name]


def build_gamma_net(m, dit: DiT, rngs: nnx.Rngs, n_dims: int = 3) -> GammaNet:
    """`f_theta` from `model.gamma.*` for point clouds in `n_dims` dimensions, sharing the
    DiT's distance embedding if `model.gamma.share_distance_embedding` (default: no)."""
    g = m.gamma
    shared = dit.distance_embedding if g.get("share_distance_embedding", False) else None
    return GammaNet(
        hidden=g.hidden,
        depth=g.depth,
        heads=g.heads,
        mlp_ratio=g.mlp_ratio,
        decoder_hidden=g.decoder_hidden,
        noise_dims=g.noise_dims,
        dist_embed=m.hidden - m.node_embed,
        num_gaussians=m.num_gaussians,
        distance_embedding=shared,
        n_dims=n_dims,
        mlp=m.mlp,
        rngs=rngs,
        dtype=compute_dtype(m),
    )


def build_egnn(m, num_features: int, rngs: nnx.Rngs, edge_features: int = 0) -> EGNN:
    """EDM's EGNN from `model.egnn.*` (with `edge_features` extra edge inputs)."""
    return egnn_from_fields(m.egnn, num_features, rngs, edge_features)


def egnn_from_fields(e, num_features: int, rngs: nnx.Rngs, edge_features: int = 0) -> EGNN:
    """A time-conditioned EGNN sized by the config section `e`.

    Args:
      e: has `hidden, num_layers, inv_sublayers, attention, tanh, coords_range,
        norm_constant, aggregation, normalization_factor` (the `EGNN` arguments).
      num_features: node features `F` besides the time.
      rngs: the parameter initialisers' randomness.
      edge_features: width of optional extra edge inputs.

    Returns:
      The `EGNN`.
    """
    return EGNN(
        num_features,
        hidden=e.hidden,
        num_layers=e.num_layers,
        inv_sublayers=e.inv_sublayers,
        attention=e.attention,
        tanh=e.tanh,
        coords_range=e.coords_range,
        norm_constant=e.norm_constant,
        aggregation=e.aggregation,
        normalization_factor=e.normalization_factor,
        condition_time=True,
        edge_features=edge_features,
        rngs=rngs,
    )


def build_denoiser(model_config, num_features: int, key: jax.Array) -> nnx.Module:
    """The denoiser `(key, x, h, t, mask) -> (eps_x, eps_h)` described by `model_config`."""
    kind = model_config.kind
    if kind not in KINDS:
        raise ValueError(f"model.kind must be one of {KINDS}; got {kind!r}.")
    rngs = nnx.Rngs(params=key)
    if kind == "edm":
        return EGNNDenoiser(build_egnn(model_config, num_features, rngs))
    dit = build_dit(model_config, num_features, rngs)
    if kind == "dit":
        return DiTDenoiser(dit)
    gamma_net = build_gamma_net(model_config, dit, rngs) if kind == "symdiff" else None
    noise_dims = model_config.gamma.noise_dims if gamma_net is not None else 3
    return SymDiffDenoiser(dit, gamma_net, group=model_config.group, noise_dims=noise_dims)


CONFORMER_KINDS = ("egnn", "symdiff", "symdiff_h")


def build_conformer_net(model_config, num_atom_features: int, key: jax.Array) -> nnx.Module:
    """The graph-conditioned conformer network `(key, x, graph, t, mask) -> [B, N, 3]`.

    `model.kind`: "egnn" (`GraphEGNNNet`), "symdiff" (`GraphSymDiffNet` with the learned
    gamma) or "symdiff_h" (gamma = Haar); `model.graph.{hidden, out, layers}` size the
    bond-graph encoder, the rest as `build_denoiser`.
    """
    from symdiff_jax.conformers.graphs import NUM_BOND_TYPES
    from symdiff_jax.models.conformer_nets import (
        BondGraphEncoder,
        GraphEGNNNet,
        GraphSymDiffNet,
    )

    m = model_config
    if m.kind not in CONFORMER_KINDS:
        raise ValueError(f"model.kind must be one of {CONFORMER_KINDS}; got {m.kind!r}.")
    rngs = nnx.Rngs(params=key)
    g = m.graph
    encoder = BondGraphEncoder(num_atom_features, g.hidden, g.out, g.layers, rngs=rngs)
    if m.kind == "egnn":
        egnn = build_egnn(m, g.out, rngs, edge_features=NUM_BOND_TYPES)
        return GraphEGNNNet(encoder, egnn)
    dit = build_dit(m, g.out, rngs)
    gamma_net = build_gamma_net(m, dit, rngs) if m.kind == "symdiff" else None
    noise_dims = m.gamma.noise_dims if gamma_net is not None else 3
    return GraphSymDiffNet(
        encoder, SymDiffDenoiser(dit, gamma_net, group=m.group, noise_dims=noise_dims)
    )
