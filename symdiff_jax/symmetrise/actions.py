"""How a rotation acts on a diffusion state: only the positions turn.

A state is either a point cloud `x [..., N, d]`, a sequence whose first entry
is the positions (`(x, h)`, `[x, h, ...]`), or a mapping with the positions
under the key `"x"` (`{"x": x, "h": h}`). Every other part of the state
(features `h`, charges, ...) is invariant under O(d) and is returned as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from symdiff_jax.groups import rotate

State = Any
"""A point cloud `[..., N, d]`, a tuple/list `(x, h, ...)`, or a mapping with key "x"."""


def _kind(state: State) -> str:
    if isinstance(state, Mapping):
        if "x" not in state:
            raise ValueError(
                "A state given as a mapping must hold its positions under the key 'x'; "
                f"got keys {sorted(state)}. Rename the positions entry to 'x' or pass `act=` "
                "to say how the group acts."
            )
        return "mapping"
    if isinstance(state, (tuple, list)):
        if len(state) == 0:
            raise ValueError("A state given as a sequence must hold the positions first; got ().")
        return "sequence"
    if hasattr(state, "shape"):
        return "array"
    raise ValueError(
        "A state must be an array [..., N, d], a tuple (x, h, ...) with the positions first, or "
        f"a mapping with the positions under 'x'; got {type(state).__name__}. Pass `act=` to "
        "say how the group acts on it."
    )


def get_positions(state: State) -> jax.Array:
    """The positions `x [..., N, d]` of a state (array, `(x, h, ...)` or `{"x": x, ...}`)."""
    kind = _kind(state)
    if kind == "mapping":
        return state["x"]
    if kind == "sequence":
        return state[0]
    return state


def replace_positions(state: State, x: jax.Array) -> State:
    """The same state with its positions replaced by `x`; containers keep their type."""
    kind = _kind(state)
    if kind == "mapping":
        out = dict(state)
        out["x"] = x
        return out if type(state) is dict else type(state)(out)
    if kind == "sequence":
        rest = list(state[1:])
        if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple
            return type(state)(x, *rest)
        return type(state)([x, *rest])
    return x


def rotate_positions(state: State, R: jax.Array) -> State:
    """Acts with `R [..., d, d]` on the positions of a state, `x -> x @ R^T`.

    The O(d) action on a diffusion state `z = [x, h]` (SymDiff, paper 002,
    section 3.3): positions rotate, features are invariant.

    Args:
      state: `x [..., N, d]`, `(x, h, ...)` or a mapping with key `"x"`.
      R: orthogonal matrices `[..., d, d]`; leading axes broadcast with `x`'s.

    Returns:
      A state of the same structure with `x` replaced by `rotate(x, R)`.
    """
    return replace_positions(state, rotate(get_positions(state), R))


def transpose_rotation(R: jax.Array) -> jax.Array:
    """The inverse of orthogonal matrices `R [..., d, d]`: the transpose `R^T`."""
    return jnp.swapaxes(R, -1, -2)


def rotation_action(R: jax.Array, state: State) -> State:
    """`R . state` with the group element first, the `act(g, x)` signature of `symmetrise`.

    Same as `rotate_positions(state, R)`.
    """
    return rotate_positions(state, R)
