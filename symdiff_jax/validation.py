"""Input checks shared by the public functions.

Shape checks raise at trace time. Value checks (`check_finite`, `check_positive`,
`check_binary_mask`, `check_permutations`, `check_orthogonal`) raise only when the values are
concrete and do nothing under jit, where `finite_matrices` and `poison` turn bad inputs into
NaN outputs instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


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


def is_concrete(x) -> bool:
    """True when `x` holds values (not a tracer under jit, vmap or grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(x, name: str = "x"):
    """Raises when a concrete `x` holds NaN or Inf; does nothing under a transformation."""
    if x is None or not is_concrete(x):
        return
    a = np.asarray(x)
    if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.sum(np.isfinite(a)))
        raise ValueError(
            f"{name} has {bad} non-finite entries (NaN or Inf) out of {a.size}; pass finite values."
        )


def check_positive(x, name: str):
    """Raises when a concrete scalar or array `x` is not finite and > 0."""
    if not is_concrete(x):
        return
    a = np.asarray(x)
    if not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(f"{name} must be finite and > 0; got {a.tolist()}.")


def check_binary_mask(mask, name: str = "mask"):
    """Raises when a concrete mask holds values other than 0 and 1."""
    if mask is None or not is_concrete(mask):
        return
    a = np.asarray(mask)
    bad = a[(a != 0) & (a != 1)]
    if bad.size:
        raise ValueError(
            f"{name} must hold only 0 (padding) and 1 (real atom); got the value "
            f"{bad.reshape(-1)[0].item()!r} among {bad.size} others than 0/1."
        )


def valid_permutations(perms) -> jax.Array:
    """True when every row of `perms [P, N]` is a permutation of 0..N-1."""
    n = jnp.shape(perms)[-1]
    return jnp.all(jnp.sort(perms, axis=-1) == jnp.arange(n, dtype=jnp.asarray(perms).dtype))


def check_permutations(perms, name: str = "permutations"):
    """Raises when a concrete `perms [..., N]` has a row that is not a permutation of 0..N-1."""
    if perms is None or not is_concrete(perms):
        return
    a = np.asarray(perms)
    n = a.shape[-1]
    rows = a.reshape(-1, n)
    for i, row in enumerate(rows):
        if not np.array_equal(np.sort(row), np.arange(n)):
            raise ValueError(
                f"{name} row {i} = {row.tolist()} is not a permutation of 0..{n - 1} "
                "(each atom index exactly once)."
            )


def orthogonality_error(m) -> jax.Array:
    """`max |M M^T - I|` over a stack of square matrices `[..., d, d]`."""
    m = jnp.asarray(m)
    eye = jnp.eye(m.shape[-1], dtype=m.dtype)
    return jnp.max(jnp.abs(jnp.matmul(m, jnp.swapaxes(m, -1, -2)) - eye))


def orthogonality_tolerance(dtype) -> float:
    """sqrt(machine epsilon) of `dtype`: 3.5e-4 in float32, 1.5e-8 in float64."""
    return float(np.sqrt(jnp.finfo(dtype).eps))


def check_orthogonal(m, name: str):
    """Raises when concrete matrices `m [..., d, d]` are not orthogonal to sqrt(eps)."""
    if not is_concrete(m):
        return
    check_finite(m, name)
    a = np.asarray(m)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    eye = np.eye(a.shape[-1], dtype=a.dtype)
    err = float(np.max(np.abs(a @ np.swapaxes(a, -1, -2) - eye), initial=0.0))
    tol = orthogonality_tolerance(a.dtype)
    if not err <= tol:
        raise ValueError(
            f"{name} must be orthogonal matrices (M M^T = I); got max |M M^T - I| = {err:.3g} "
            f"> {tol:.2g}."
        )


def check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """`shape` as a tuple of non-negative Python ints; raises on anything else."""
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of non-negative ints; got {shape!r}."
        ) from None
    if any(s < 0 for s in out):
        raise ValueError(f"{name} must be a sequence of non-negative ints; got {shape!r}.")
    return out


@jax.jit
def finite_matrices(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(a with every non-finite matrix replaced by zeros, finite [...])` for `a [..., m, n]`.

    Feed the first to a matrix decomposition (XLA:CPU's SVD does not return on some
    matrices with Inf) and pass the second to `poison` on its results. Finite matrices
    pass through unchanged.
    """
    ok = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    return jnp.where(ok[..., None, None], a, jnp.zeros_like(a)), ok


@jax.jit
def poison(x: jax.Array, ok: jax.Array) -> jax.Array:
    """`x` where `ok`, NaN elsewhere; `ok` broadcasts against the leading axes of `x`."""
    ok = jnp.reshape(ok, jnp.shape(ok) + (1,) * (jnp.ndim(x) - jnp.ndim(ok)))
    return jnp.where(ok, x, jnp.asarray(jnp.nan, x.dtype))
