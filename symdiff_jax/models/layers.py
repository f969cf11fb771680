"""Building blocks shared by the DiT and the gamma network: initialised linears, time input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["mixed_precision", "time_vector", "xavier_linear"]


def time_vector(t, batch: int, dtype) -> jax.Array:
    """The diffusion time as a vector `[B]` in `dtype` from a scalar, `[B]` or `[B, 1]`.

    Raises:
      ValueError: any other shape.
    """
    t = jnp.asarray(t, dtype)
    if t.ndim == 2 and t.shape[-1] == 1:
        t = t[:, 0]
    if t.ndim == 0:
        t = jnp.broadcast_to(t, (batch,))
    if t.shape != (batch,):
        raise ValueError(
            f"t must be a scalar or have shape [B] = ({batch},) (or [B, 1]); got shape {t.shape}."
        )
    return t


def xavier_linear(
    in_features: int,
    out_features: int,
    rngs: nnx.Rngs,
    param_dtype,
    *,
    zero: bool = False,
    dtype=None,
) -> nnx.Linear:
    """An `nnx.Linear` with Xavier-uniform (or, with `zero`, zero) kernel and zero bias.

    The initialisation of DiT (Peebles and Xie, 2023); `zero` gives the adaLN-Zero layers.
    `dtype` sets mixed-precision matmuls (see `mixed_precision`).
    """
    init = nnx.initializers.zeros_init() if zero else nnx.initializers.xavier_uniform()
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=init,
        bias_init=nnx.initializers.zeros_init(),
        param_dtype=param_dtype,
        rngs=rngs,
        **mixed_precision(dtype, param_dtype),
    )


def mixed_precision(dtype, param_dtype) -> dict:
    """`nnx.Linear` options for matmuls in `dtype` (inputs and weights cast) that
    accumulate and return `param_dtype`; none when `dtype` is None (full precision)."""
    if dtype is None:
        return {}
    return {"dtype": dtype, "preferred_element_type": param_dtype}
