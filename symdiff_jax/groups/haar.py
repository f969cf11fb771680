"""Haar (uniform) sampling on O(d) and SO(d), and a differentiable QR map to O(d).

All samplers use the QR decomposition of a standard Gaussian matrix with the
sign fix of Mezzadri (2006), "How to generate random matrices from the
classical compact groups", section 5: with A = QR, the matrix
Q diag(sign(diag R)) is Haar-distributed on O(d).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from symdiff_jax.groups.names import check_group_name
from symdiff_jax.validation import check_shape, finite_matrices, poison


def _sign_fixed_qr(a: jax.Array) -> jax.Array:
    """Q diag(sign(diag R)) for A = QR (Mezzadri 2006, eq. 5.1); sign(0) := +1."""
    safe, finite = finite_matrices(a)
    q, r = jnp.linalg.qr(safe)
    q, r = poison(q, finite), poison(r, finite)
    d = jnp.diagonal(r, axis1=-2, axis2=-1)
    signs = jnp.where(d < 0, -1.0, 1.0).astype(q.dtype)
    return q * signs[..., None, :]


def _flip_to_special(q: jax.Array) -> jax.Array:
    """Multiplies the last column by det(q) = +-1, mapping O(d) onto SO(d)."""
    det = jnp.linalg.det(q)
    signs = jnp.ones(q.shape[:-2] + (q.shape[-1],), q.dtype)
    signs = signs.at[..., -1].set(jnp.where(det < 0, -1.0, 1.0).astype(q.dtype))
    return q * signs[..., None, :]


def qr_to_orthogonal(a: jax.Array, special: bool = False) -> jax.Array:
    """Maps square matrices `a [..., d, d]` to O(d) (or SO(d)) by sign-fixed QR.

    This is the map used by SymDiff's learned rotation kernel f_theta
    (paper 002, Appendix B, Algorithm 4, last line "QRDecomposition"): it is
    differentiable almost everywhere, so gradients flow from R back to `a`
    (reparametrisation). The convention is the one of `haar_o3`: a standard
    Gaussian `a` gives a Haar-distributed output.

    Args:
      a: `[..., d, d]` matrices, almost surely invertible.
      special: if True, flip the last column when det = -1 to land in SO(d).

    Returns:
      `[..., d, d]` orthogonal matrices; NaN for a matrix with NaN or Inf (with or
      without jit; the decomposition never sees it).
    """
    a = jnp.asarray(a)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(
            f"qr_to_orthogonal needs square matrices [..., d, d]; got shape {a.shape}."
        )
    q = _sign_fixed_qr(a)
    return _flip_to_special(q) if special else q


def haar_orthogonal(key: jax.Array, dim: int, shape: Sequence[int] = (), dtype=None) -> jax.Array:
    """Haar-uniform samples on O(dim), shape `[*shape, dim, dim]`.

    Raises:
      ValueError: `dim` not a positive int or `shape` with a negative or non-int entry.
    """
    shape = check_shape(shape)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int; got {dim!r}.")
    dtype = dtype or jnp.result_type(float)
    a = jax.random.normal(key, shape + (dim, dim), dtype)
    return qr_to_orthogonal(a)


def haar_special_orthogonal(
    key: jax.Array, dim: int, shape: Sequence[int] = (), dtype=None
) -> jax.Array:
    """Haar-uniform samples on SO(dim), shape `[*shape, dim, dim]`.

    Right-multiplying the det = -1 coset by diag(1, .., 1, -1) is a bijection
    onto SO(dim) that preserves Haar measure, so the result is uniform.
    """
    return _flip_to_special(haar_orthogonal(key, dim, shape, dtype))


def haar_o3(key: jax.Array, shape: Sequence[int] = (), dtype=None) -> jax.Array:
    """Haar-uniform samples on O(3): `[*shape, 3, 3]`, det = +1 or -1 with probability 1/2."""
    return haar_orthogonal(key, 3, shape, dtype)


def haar_so3(key: jax.Array, shape: Sequence[int] = (), dtype=None) -> jax.Array:
    """Haar-uniform samples on SO(3): `[*shape, 3, 3]` rotations."""
    return haar_special_orthogonal(key, 3, shape, dtype)


def haar_o2(key: jax.Array, shape: Sequence[int] = (), dtype=None) -> jax.Array:
    """Haar-uniform samples on O(2): `[*shape, 2, 2]`."""
    return haar_orthogonal(key, 2, shape, dtype)


def haar_so2(key: jax.Array, shape: Sequence[int] = (), dtype=None) -> jax.Array:
    """Haar-uniform samples on SO(2): `[*shape, 2, 2]` planar rotations."""
    return haar_special_orthogonal(key, 2, shape, dtype)


def sample_group(key: jax.Array, group: str, shape: Sequence[int] = (), dtype=None) -> jax.Array:
    """Haar samples of a named compact group: "O3", "SO3", "O2", "SO2"."""
    check_group_name(group)
    samplers = {"O3": haar_o3, "SO3": haar_so3, "O2": haar_o2, "SO2": haar_so2}
    return samplers[group](key, shape, dtype)
