"""Test helpers for modules: parameters that switch every path on."""

from __future__ import annotations

import jax
from flax import nnx


def randomise_parameters(module: nnx.Module, key: jax.Array, scale: float = 0.25) -> nnx.Module:
    """Replaces every `nnx.Param` of `module` (in place) by `scale * N(0, 1)`.

    Freshly initialised SymDiff networks output exactly zero (adaLN-Zero), so every
    equivariance property holds trivially at initialisation; property tests randomise
    the parameters first so that a broken symmetry can show.

    Returns:
      the same module, for chaining.
    """
    _, params = nnx.split(module, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    new = [
        scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    nnx.update(module, jax.tree_util.tree_unflatten(treedef, new))
    return module
