"""Parameters of the official SymDiff and EDM PyTorch models in our Flax NNX modules.

The official dynamics (`DiTGaussian_dynamics`, `DiT_DitGaussian_dynamics` of SymDiff,
`EGNN_dynamics_QM9` of EDM) are built from an `argparse.Namespace` of their training
script and saved as a PyTorch `state_dict`. Here the same architecture is built from
those arguments with our modules (`DiT`, `GammaNet`, `EGNN`) and every tensor of the
state dict is copied to the matching parameter:

- `nn.Linear(in, out).weight [out, in]` becomes `nnx.Linear.kernel [in, out]` (transposed);
- the Gaussian centres and widths `nn.Embedding(1, K).weight [1, K]` become `[K]`;
- EDM's read-out also predicts the time column, which the official dynamics slices off:
  its last row is dropped.

A state dict holds numpy arrays (or anything `np.asarray` takes), keyed by the official
names with an optional prefix (`dynamics.` inside an `EnVariationalDiffusion`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from symdiff_jax.models import EGNN, DiT, GammaNet
from symdiff_jax.models.embeddings import GaussianDistanceEmbedding

# The official DiT's MLP options and ours.
_MLP_TYPES = {"swiglu": "swiglu", "mlp": "gelu"}


def _arg(args: Any, name: str, default: Any = None) -> Any:
    if isinstance(args, Mapping):
        value = args.get(name, default)
    else:
        value = getattr(args, name, default)
    if value is None:
        raise ValueError(f"The official arguments lack {name!r}; pass a complete args.pickle.")
    return value


def _tensor(state: Mapping[str, Any], name: str) -> np.ndarray:
    if name not in state:
        raise KeyError(
            f"The state dict has no tensor {name!r}; it does not match the official "
            "architecture given by the arguments."
        )
    return np.asarray(state[name])


def _set(variable: nnx.Variable, value: np.ndarray, name: str) -> None:
    if tuple(variable[...].shape) != tuple(value.shape):
        raise ValueError(
            f"Official tensor {name!r} has shape {tuple(value.shape)}; the parameter it "
            f"maps to has shape {tuple(variable[...].shape)}."
        )
    variable[...] = jnp.asarray(value, variable[...].dtype)


def load_linear(linear: nnx.Linear, state: Mapping[str, Any], name: str) -> None:
    """Copies `name.weight` (transposed) and `name.bias` into an `nnx.Linear`."""
    _set(linear.kernel, _tensor(state, f"{name}.weight").T, f"{name}.weight")
    if linear.bias is not None:
        _set(linear.bias, _tensor(state, f"{name}.bias"), f"{name}.bias")


def _load_backbone(backbone, state: Mapping[str, Any], prefix: str) -> None:
    """The official `DiT` (blocks, time embedding, optional input Linear and final layer)."""
    if backbone.input is not None:
        load_linear(backbone.input, state, f"{prefix}x_embedder")
    load_linear(backbone.time_embedding.linear1, state, f"{prefix}t_embedder.mlp.0")
    load_linear(backbone.time_embedding.linear2, state, f"{prefix}t_embedder.mlp.2")
    for i, block in enumerate(backbone.blocks):
        b = f"{prefix}blocks.{i}."
        load_linear(block.attn.qkv, state, b + "attn.qkv")
        load_linear(block.attn.proj, state, b + "attn.proj")
        load_linear(block.mlp.fc1, state, b + "mlp.fc1")
        load_linear(block.mlp.fc2, state, b + "mlp.fc2")
        load_linear(block.adaln, state, b + "adaLN_modulation.1")
    if backbone.final is not None:
        load_linear(backbone.final.adaln, state, f"{prefix}final_layer.adaLN_modulation.1")
        load_linear(backbone.final.linear, state, f"{prefix}final_layer.linear")


def load_distance_embedding(
    embedding: GaussianDistanceEmbedding, state: Mapping[str, Any], prefix: str = ""
) -> None:
    """`gaussian_embedder.{means,stds}` and `pos_embedder` of the official dynamics."""
    for attr in ("means", "stds"):
        name = f"{prefix}gaussian_embedder.{attr}.weight"
        _set(getattr(embedding, attr), _tensor(state, name).reshape(-1), name)
    load_linear(embedding.linear, state, f"{prefix}pos_embedder")


def build_dit(args: Any, num_features: int, rngs: nnx.Rngs, param_dtype=jnp.float32) -> DiT:
    """Our `DiT` with the sizes of the official `DiTGaussian_dynamics` (or the `k` of
    `DiT_DitGaussian_dynamics`); its distance embedding takes the official padded-slot bias.

    Args:
      args: the official arguments (`argparse.Namespace` or mapping): `hidden_size`,
        `depth`, `num_heads`, `mlp_ratio`, `xh_hidden_size`, `K`, `mlp_type`.
      num_features: width of `h` (QM9 with charges: 6).
      rngs: initial parameters (all overwritten by `load_dit`).
      param_dtype: parameter dtype.
    """
    hidden = int(_arg(args, "hidden_size"))
    node_embed = int(_arg(args, "xh_hidden_size"))
    mlp = _MLP_TYPES[str(_arg(args, "mlp_type", "swiglu"))]
    dit = DiT(
        num_features,
        hidden,
        int(_arg(args, "depth")),
        int(_arg(args, "num_heads")),
        float(_arg(args, "mlp_ratio")),
        node_embed,
        num_gaussians=int(_arg(args, "K")),
        mlp=mlp,
        rngs=rngs,
        param_dtype=param_dtype,
    )
    dit.distance_embedding = GaussianDistanceEmbedding(
        int(_arg(args, "K")),
        hidden - node_embed,
        rngs=rngs,
        param_dtype=param_dtype,
        padded_pair_bias=True,
    )
    return dit


def load_dit(dit: DiT, state: Mapping[str, Any], prefix: str = "", net: str = "model") -> None:
    """Copies an official `DiTGaussian_dynamics` (`net="model"`) or the eps-network of a
    `DiT_DitGaussian_dynamics` (`net="k"`) into `dit`."""
    load_distance_embedding(dit.distance_embedding, state, prefix)
    load_linear(dit.input_embedding, state, f"{prefix}xh_embedder")
    _load_backbone(dit.backbone, state, f"{prefix}{net}.")


def build_gamma_net(args: Any, dit: DiT, rngs: nnx.Rngs, param_dtype=jnp.float32) -> GammaNet:
    """Our `GammaNet` with the sizes of the official `gamma_enc` / `gamma_dec`, sharing
    `dit`'s distance embedding as the official model does."""
    return GammaNet(
        int(_arg(args, "enc_hidden_size")),
        int(_arg(args, "enc_depth")),
        int(_arg(args, "enc_num_heads")),
        float(_arg(args, "enc_mlp_ratio")),
        int(_arg(args, "dec_hidden_features")),
        int(_arg(args, "noise_dims", 0)),
        distance_embedding=dit.distance_embedding,
        mlp=_MLP_TYPES[str(_arg(args, "mlp_type", "swiglu"))],
        rngs=rngs,
        param_dtype=param_dtype,
    )


def load_gamma_net(gamma_net: GammaNet, state: Mapping[str, Any], prefix: str = "") -> None:
    """Copies `gamma_enc` (without its unused final layer) and `gamma_dec` into `gamma_net`."""
    backbone = gamma_net.backbone
    if backbone.final is not None:
        raise ValueError("The learned gamma's trunk has no final layer.")
    _load_backbone(backbone, state, f"{prefix}gamma_enc.")
    load_linear(gamma_net.decoder1, state, f"{prefix}gamma_dec.fc1")
    load_linear(gamma_net.decoder2, state, f"{prefix}gamma_dec.fc2")


def build_egnn(args: Any, num_features: int, rngs: nnx.Rngs, param_dtype=jnp.float32) -> EGNN:
    """Our `EGNN` with the settings of EDM's `EGNN_dynamics_QM9` (time-conditioned).

    EDM bounds every block's coordinate weights by the full `coords_range` (15); ours
    divides it by the number of layers, so it is passed multiplied by that number.
    """
    layers = int(_arg(args, "n_layers"))
    return EGNN(
        num_features,
        out_features=num_features,
        hidden=int(_arg(args, "nf")),
        num_layers=layers,
        inv_sublayers=int(_arg(args, "inv_sublayers")),
        attention=bool(_arg(args, "attention")),
        tanh=bool(_arg(args, "tanh")),
        coords_range=15.0 * layers,
        norm_constant=float(_arg(args, "norm_constant")),
        aggregation=str(_arg(args, "aggregation_method")),
        normalization_factor=float(_arg(args, "normalization_factor")),
        condition_time=bool(_arg(args, "condition_time", True)),
        param_dtype=param_dtype,
        rngs=rngs,
    )


def load_egnn(egnn: EGNN, state: Mapping[str, Any], prefix: str = "") -> None:
    """Copies EDM's `egnn.*` tensors into `egnn` (the time column of the read-out dropped)."""
    p = f"{prefix}egnn."
    load_linear(egnn.embedding, state, p + "embedding")
    out_w = _tensor(state, p + "embedding_out.weight")
    out_b = _tensor(state, p + "embedding_out.bias")
    keep = egnn.readout.kernel[...].shape[1]
    _set(egnn.readout.kernel, out_w[:keep].T, p + "embedding_out.weight")
    _set(egnn.readout.bias, out_b[:keep], p + "embedding_out.bias")
    for i, block in enumerate(egnn.blocks):
        b = f"{p}e_block_{i}."
        for j, sub in enumerate(block.sublayers):
            g = f"{b}gcl_{j}."
            load_linear(sub.edge_in, state, g + "edge_mlp.0")
            load_linear(sub.edge_out, state, g + "edge_mlp.2")
            load_linear(sub.node_in, state, g + "node_mlp.0")
            load_linear(sub.node_out, state, g + "node_mlp.2")
            if sub.gate is not None:
                load_linear(sub.gate, state, g + "att_mlp.0")
        load_linear(block.update.lin1, state, b + "gcl_equiv.coord_mlp.0")
        load_linear(block.update.lin2, state, b + "gcl_equiv.coord_mlp.2")
        load_linear(block.update.lin3, state, b + "gcl_equiv.coord_mlp.4")
