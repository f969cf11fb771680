"""E(n)-equivariant graph neural network (EGNN) in Flax NNX.

Satorras, Hoogeboom and Welling (2021), "E(n) Equivariant Graph Neural Networks",
equations (3)-(6), on the complete graph of the real atoms of each system, in the
block layout used by the EDM denoiser (Hoogeboom et al., 2022): every block runs
`inv_sublayers` invariant message-passing sublayers (eqs. 3, 5, 6) and then one
coordinate update (eq. 4).

For points `x [B, N, d]` (any d), features `h [B, N, F]`, `mask [B, N]` and a
time `t`, the network is exactly

- E(d)-equivariant in `x`: `EGNN(x R^T + b) = (x_out R^T + b, h_out)` for every
  orthogonal `R` (rotations and reflections) and translation `b`, since it only
  sees `x` through squared distances and the differences `x_i - x_j`;
- S_N-equivariant: permuting the atoms (of `x`, `h` and `mask` together) permutes
  the outputs;
- blind to padding: padded atoms neither send nor receive messages and their
  outputs are zero.

The denoiser of a diffusion model can use `x_out` directly (x0-prediction) or
`x_out - x` (the EDM eps-prediction).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.models.mlp import dense_tokens
from symdiff_jax.validation import check_points, default_mask

_AGGREGATIONS = ("sum", "mean")


def pairwise_geometry(x: jax.Array, norm_constant: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Squared distances and normalised differences of all pairs of points.

    Satorras et al. (2021) eq. (3) uses `||x_i - x_j||^2`; eq. (4) uses `x_i - x_j`,
    which EDM divides by `||x_i - x_j|| + norm_constant` for stability.

    Args:
      x: `[B, N, d]` points.
      norm_constant: added to the pair distance in the normaliser of the
        differences; 0 with `sqrt(.. + 1e-8)` gives (almost) unit vectors.

    Returns:
      `(sq_dist [B, N, N, 1], diff [B, N, N, d])` with `diff[b, i, j] =
      (x_i - x_j) / (|x_i - x_j| + norm_constant)`.
    """
    diff = x[..., :, None, :] - x[..., None, :, :]
    sq_dist = jnp.sum(diff**2, axis=-1, keepdims=True)
    norm = jnp.sqrt(sq_dist + 1e-8)
    return sq_dist, diff / (norm + norm_constant)


def aggregate(
    messages: jax.Array,
    edge_mask: jax.Array,
    aggregation: str = "sum",
    normalization_factor: float = 1.0,
) -> jax.Array:
    """Sums the messages `[B, N, N, C]` over the sender axis j (eqs. 4 and 5).

    Args:
      messages: `[B, N, N, C]`, entry `[b, i, j]` is the message from j to i.
      edge_mask: `[B, N, N, 1]`, 1 on real edges i != j.
      aggregation: "sum" divides the sum by `normalization_factor` (EDM uses
        100 on QM9); "mean" divides it by the number of real neighbours of i.
      normalization_factor: see `aggregation`.

    Returns:
      `[B, N, C]` aggregated messages.
    """
    total = jnp.sum(messages * edge_mask, axis=-2)
    if aggregation == "sum":
        return total / normalization_factor
    count = jnp.maximum(jnp.sum(edge_mask, axis=-2), 1.0)
    return total / count


def _matmul_2d(x: jax.Array, w: jax.Array) -> jax.Array:
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def edge_linear(linear: nnx.Linear, h: jax.Array, edge_attr: jax.Array) -> jax.Array:
    """`linear([h_i, h_j, a_ij])` for all pairs, without building the concatenation.

    A linear map of a concatenation is a sum of linear maps of its parts, so the
    two feature blocks are applied once per node (`[B, N, H]`) and broadcast over
    the pairs; only the edge attributes are multiplied per pair. Same result as
    `linear(jnp.concatenate([h_i, h_j, a_ij], -1))` with ~N times fewer
    multiply-adds for the feature blocks.

    Args:
      linear: an `nnx.Linear` with input width `2 H + E`.
      h: `[B, N, H]` node features.
      edge_attr: `[B, N, N, E]` edge attributes.

    Returns:
      `[B, N, N, out]`, entry `[b, i, j]` = `linear([h_i, h_j, a_ij])`.
    """
    width = h.shape[-1]
    dtype = jnp.result_type(h.dtype, edge_attr.dtype)
    kernel = linear.kernel[...].astype(dtype)
    # 2-D matmuls (leading axes flattened): see `symdiff_jax.models.mlp.dense_tokens`.
    from_i = _matmul_2d(h, kernel[:width])
    from_j = _matmul_2d(h, kernel[width : 2 * width])
    out = (
        _matmul_2d(edge_attr, kernel[2 * width :])
        + from_i[..., :, None, :]
        + from_j[..., None, :, :]
    )
    if linear.bias is not None:
        out = out + linear.bias[...].astype(dtype)
    return out


class _Sublayer(nnx.Module):
    """Invariant message passing, eqs. (3), (5) and (6), with an optional attention gate."""

    def __init__(
        self,
        hidden: int,
        edge_features: int,
        *,
        attention: bool,
        activation: Callable,
        aggregation: str,
        normalization_factor: float,
        param_dtype,
        rngs: nnx.Rngs,
    ):
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.edge_in = nnx.Linear(2 * hidden + edge_features, hidden, **kw)
        self.edge_out = nnx.Linear(hidden, hidden, **kw)
        self.node_in = nnx.Linear(2 * hidden, hidden, **kw)
        self.node_out = nnx.Linear(hidden, hidden, **kw)
        self.gate = nnx.Linear(hidden, 1, **kw) if attention else None
        self.activation = activation
        self.aggregation = aggregation
        self.normalization_factor = normalization_factor

    def __call__(self, h, edge_attr, edge_mask, node_mask):
        # Eq. (3): m_ij = phi_e(h_i, h_j, ||x_i - x_j||^2, a_ij).
        m = self.activation(edge_linear(self.edge_in, h, edge_attr))
        m = self.activation(dense_tokens(self.edge_out, m))
        if self.gate is not None:
            m = m * jax.nn.sigmoid(dense_tokens(self.gate, m))
        # Eq. (5): m_i = sum_{j != i} m_ij.
        m_i = aggregate(m, edge_mask, self.aggregation, self.normalization_factor)
        # Eq. (6): h_i <- h_i + phi_h(h_i, m_i) (residual, as in EDM).
        update = dense_tokens(
            self.node_out,
            self.activation(dense_tokens(self.node_in, jnp.concatenate([h, m_i], axis=-1))),
        )
        return (h + update) * node_mask


class _CoordinateUpdate(nnx.Module):
    """Coordinate update, eq. (4): x_i <- x_i + C sum_{j != i} (x_i - x_j) phi_x(m_ij)."""

    def __init__(
        self,
        hidden: int,
        edge_features: int,
        *,
        tanh: bool,
        coords_range: float,
        activation: Callable,
        aggregation: str,
        normalization_factor: float,
        param_dtype,
        rngs: nnx.Rngs,
    ):
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.lin1 = nnx.Linear(2 * hidden + edge_features, hidden, **kw)
        self.lin2 = nnx.Linear(hidden, hidden, **kw)
        # A near-zero last layer (EDM: xavier_uniform with gain 0.001, no bias),
        # so that an untrained network starts close to the identity on x.
        small = nnx.initializers.variance_scaling(1e-6, "fan_avg", "uniform")
        self.lin3 = nnx.Linear(hidden, 1, use_bias=False, kernel_init=small, **kw)
        self.tanh = tanh
        self.coords_range = coords_range
        self.activation = activation
        self.aggregation = aggregation
        self.normalization_factor = normalization_factor

    def __call__(self, h, x, diff, edge_attr, edge_mask, node_mask):
        phi = self.activation(edge_linear(self.lin1, h, edge_attr))
        phi = dense_tokens(self.lin3, self.activation(dense_tokens(self.lin2, phi)))
        if self.tanh:
            phi = jnp.tanh(phi) * self.coords_range
        shift = aggregate(diff * phi, edge_mask, self.aggregation, self.normalization_factor)
        return (x + shift) * node_mask


class _Block(nnx.Module):
    """`inv_sublayers` invariant sublayers followed by one coordinate update."""

    def __init__(self, hidden: int, edge_features: int, inv_sublayers: int, *, norm_constant, **kw):
        coord_kw = {k: v for k, v in kw.items() if k != "attention"}
        tanh = coord_kw.pop("tanh")
        coords_range = coord_kw.pop("coords_range")
        sub_kw = {k: v for k, v in kw.items() if k not in ("tanh", "coords_range")}
        self.sublayers = nnx.List(
            [_Sublayer(hidden, edge_features, **sub_kw) for _ in range(inv_sublayers)]
        )
        self.update = _CoordinateUpdate(
            hidden, edge_features, tanh=tanh, coords_range=coords_range, **coord_kw
        )
        self.norm_constant = norm_constant

    def __call__(self, h, x, static_edges, edge_mask, node_mask):
        # static_edges: the initial squared distances, then any extra edge inputs.
        sq_dist, diff = pairwise_geometry(x, self.norm_constant)
        edge_attr = jnp.concatenate([sq_dist, static_edges], axis=-1)
        for sublayer in self.sublayers:
            h = sublayer(h, edge_attr, edge_mask, node_mask)
        x = self.update(h, x, diff, edge_attr, edge_mask, node_mask)
        return h, x


class EGNN(nnx.Module):
    """E(d) x S_N-equivariant graph network on the complete graph of real atoms.

    Satorras et al. (2021), eqs. (3)-(6), in EDM's layout (Hoogeboom et al.,
    2022, `egnn_new.py`): a linear embedding of `[h, t]`, `num_layers` blocks
    each made of `inv_sublayers` invariant sublayers (edge MLP with optional
    sigmoid attention gate, residual node MLP) and one coordinate update, then a
    linear read-out of the features. Edge inputs are the current and the initial
    squared distances.

    Args:
      in_features: F, the width of the input features `h` (without time).
      out_features: width of the output features (default `in_features`).
      hidden: width of every hidden layer.
      num_layers: number of equivariant blocks (coordinate updates).
      inv_sublayers: invariant sublayers per block.
      attention: multiply messages by a learned sigmoid gate (EDM style).
      tanh: bound the coordinate weights, `phi_x = coords_range_layer * tanh(.)`
        with `coords_range_layer = coords_range / num_layers`.
      coords_range: see `tanh`.
      norm_constant: the differences in eq. (4) are divided by
        `|x_i - x_j| + norm_constant`.
      aggregation: "sum" (divided by `normalization_factor`) or "mean" (over
        the real neighbours).
      normalization_factor: divisor of the "sum" aggregation.
      condition_time: append the time `t` as one more input feature (EDM).
      edge_features: width E of optional extra edge inputs `edge_attr [B, N, N, E]`
        (e.g. one-hot bond types of a molecular graph), appended to the two squared
        distances of every edge MLP. 0: none (EDM).
      activation: nonlinearity of every MLP (SiLU by default).
      param_dtype: dtype of the parameters.
      rngs: `nnx.Rngs` for initialisation.

    Call:
      `model(x [B, N, d], h [B, N, F], mask [B, N] | None, t [B] | scalar | None,
      edge_attr [B, N, N, E] | None)`
      returns `(x_out [B, N, d], h_out [B, N, out_features])`. Unbatched inputs
      `x [N, d]`, `h [N, F]`, `mask [N]` are accepted and give unbatched outputs.
    """

    def __init__(
        self,
        in_features: int,
        *,
        out_features: int | None = None,
        hidden: int = 64,
        num_layers: int = 4,
        inv_sublayers: int = 1,
        attention: bool = False,
        tanh: bool = False,
        coords_range: float = 15.0,
        norm_constant: float = 1.0,
        aggregation: str = "sum",
        normalization_factor: float = 1.0,
        condition_time: bool = True,
        edge_features: int = 0,
        activation: Callable = nnx.silu,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if aggregation not in _AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {_AGGREGATIONS}; got {aggregation!r}.")
        if num_layers < 1 or inv_sublayers < 0 or hidden < 1:
            raise ValueError(
                "EGNN needs num_layers >= 1, inv_sublayers >= 0 and hidden >= 1; got "
                f"num_layers={num_layers}, inv_sublayers={inv_sublayers}, hidden={hidden}."
            )
        out_features = in_features if out_features is None else out_features
        self.in_features = in_features
        self.condition_time = condition_time
        self.edge_features = int(edge_features)
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.embedding = nnx.Linear(in_features + int(condition_time), hidden, **kw)
        self.readout = nnx.Linear(hidden, out_features, **kw)
        block_kw = dict(
            attention=attention,
            tanh=tanh,
            coords_range=coords_range / num_layers,
            activation=activation,
            aggregation=aggregation,
            normalization_factor=normalization_factor,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.blocks = nnx.List(
            [
                _Block(
                    hidden,
                    2 + self.edge_features,
                    inv_sublayers,
                    norm_constant=norm_constant,
                    **block_kw,
                )
                for _ in range(num_layers)
            ]
        )

    def __call__(
        self,
        x: jax.Array,
        h: jax.Array,
        mask: jax.Array | None = None,
        t: jax.Array | None = None,
        edge_attr: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        check_points(x)
        unbatched = x.ndim == 2
        if unbatched:
            x, h = x[None], h[None]
            mask = None if mask is None else mask[None]
            t = None if t is None else jnp.reshape(t, (1,))
            edge_attr = None if edge_attr is None else edge_attr[None]
        if self.edge_features and (
            edge_attr is None
            or edge_attr.shape != x.shape[:2] + x.shape[1:2] + (self.edge_features,)
        ):
            raise ValueError(
                f"This EGNN was built with edge_features={self.edge_features}: pass edge_attr "
                f"of shape {x.shape[:2] + x.shape[1:2] + (self.edge_features,)}; got "
                f"{None if edge_attr is None else edge_attr.shape}."
            )
        if not self.edge_features and edge_attr is not None:
            raise ValueError("This EGNN was built with edge_features=0; edge_attr must be None.")
        if x.ndim != 3:
            raise ValueError(f"EGNN takes x of shape [B, N, d] or [N, d]; got shape {x.shape}.")
        if h.shape[:2] != x.shape[:2] or h.shape[-1] != self.in_features:
            raise ValueError(
                f"h must have shape {x.shape[:2] + (self.in_features,)} to match x of shape "
                f"{x.shape} and in_features={self.in_features}; got shape {h.shape}."
            )
        mask = default_mask(x, mask)
        dtype = jnp.result_type(x.dtype, h.dtype)
        x, h = x.astype(dtype), h.astype(dtype)
        node_mask = mask.astype(dtype)[..., None]
        n = x.shape[-2]
        not_self = 1.0 - jnp.eye(n, dtype=dtype)
        edge_mask = (node_mask[..., :, None, :] * node_mask[..., None, :, :]) * not_self[..., None]

        if self.condition_time:
            if t is None:
                raise ValueError("This EGNN was built with condition_time=True; pass the time t.")
            t = jnp.broadcast_to(jnp.asarray(t, dtype).reshape(-1), (x.shape[0],))
            h = jnp.concatenate([h, jnp.broadcast_to(t[:, None, None], x.shape[:2] + (1,))], -1)

        x = x * node_mask
        static_edges, _ = pairwise_geometry(x)
        if self.edge_features:
            static_edges = jnp.concatenate([static_edges, edge_attr.astype(dtype)], -1)
        h = dense_tokens(self.embedding, h) * node_mask
        for block in self.blocks:
            h, x = block(h, x, static_edges, edge_mask, node_mask)
        h = dense_tokens(self.readout, h) * node_mask
        if unbatched:
            return x[0], h[0]
        return x, h
