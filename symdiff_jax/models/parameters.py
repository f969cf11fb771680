"""Parameter counts of Flax NNX modules and of parameter pytrees."""

from __future__ import annotations

import math
from typing import Any

import jax
from flax import nnx

__all__ = ["count_params", "param_breakdown"]


def count_params(params: Any) -> int:
    """Number of scalar parameters of a module (its `nnx.Param`s) or of a pytree of arrays.

    Works on concrete modules and on abstract ones from `nnx.eval_shape` (no memory
    is allocated for those). Parameters shared between submodules are counted once.
    """
    if isinstance(params, nnx.Module):
        params = nnx.state(params, nnx.Param)
    leaves = jax.tree_util.tree_leaves(params)
    return int(sum(math.prod(leaf.shape) for leaf in leaves))


def param_breakdown(module: nnx.Module) -> dict[str, int]:
    """Parameter counts of the direct submodules of `module`, by attribute name.

    Shared submodules appear under every name that holds them; `count_params`
    of the parent counts them once.
    """
    counts = {}
    for name, value in vars(module).items():
        if isinstance(value, nnx.Module):
            counts[name] = count_params(value)
        elif isinstance(value, nnx.Param):
            counts[name] = math.prod(value.shape)
    return counts
