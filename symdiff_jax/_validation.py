"""Shape checks shared by the public functions: clear errors at trace time."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp


def check_points(x, name: str = "x", dims: Sequence[int] | None = None, min_ndim: int = 2):
    """Checks that `x` is a point cloud `[..., N, d]` with d in `dims`."""
    shape = jnp.shape(x)
    if len(shape) < min_ndim:
        raise ValueError(f"{name} must be a point cloud of shape [..., N, d]; got shape {shape}.")
    if dims is not None and shape[-1] not in tuple(dims):
        raise ValueError(
            f"{name} must have its last axis (spatial dimension) in {tuple(dims)}; "
            f"got shape {shape}."
        )


def check_mask(x, mask, x_name: str = "x", mask_name: str = "mask"):
    """Checks that `mask [..., N]` matches the atom axis of `x [..., N, d]`."""
    if mask is None:
        return
    xs, ms = jnp.shape(x), jnp.shape(mask)
    if len(ms) < 1 or ms[-1] != xs[-2]:
        raise ValueError(
            f"{mask_name} must have shape [..., N] with N = {xs[-2]} matching "
            f"{x_name} of shape {xs}; got {mask_name} of shape {ms}."
        )


def check_rotation(R, dim: int, name: str = "R"):
    """Checks that `R` has shape `[..., dim, dim]`."""
    shape = jnp.shape(R)
    if len(shape) < 2 or shape[-1] != dim or shape[-2] != dim:
        raise ValueError(
            f"{name} must have shape [..., {dim}, {dim}] to act on points of "
            f"dimension {dim}; got shape {shape}."
        )


def default_mask(x, mask):
    """`mask [..., N]` checked against `x [..., N, d]`, or all ones in `x`'s dtype when None.

    The mask is returned as given (no cast); padded rows are where it is 0.
    """
    if mask is None:
        return jnp.ones(jnp.shape(x)[:-1], x.dtype)
    check_mask(x, mask)
    return mask
