"""Test helpers for networks: one compiled call, and the padding layouts they are tested on."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

# Real-atom masks of six atoms: no padding, padding at the end, padding between real atoms.
MASK_LAYOUTS = {
    "full": [1, 1, 1, 1, 1, 1],
    "trailing": [1, 1, 1, 1, 0, 0],
    "interleaved": [1, 0, 1, 1, 0, 1],
}


def compiled_call(module: nnx.Module) -> Callable:
    """`module(*args)` as one `jax.jit`-compiled function of its arguments.

    Eager NNX calls are slow on CPU; the parameters are split off once and passed as an
    argument, so later changes to `module` are not seen.

    Args:
      module: a callable `nnx.Module`.

    Returns:
      `f(*args) = module(*args)`, compiled.
    """
    graphdef, params = nnx.split(module)
    apply = jax.jit(lambda p, *a: nnx.merge(graphdef, p)(*a))
    return lambda *args: apply(params, *args)
