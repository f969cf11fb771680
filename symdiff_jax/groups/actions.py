"""Actions of O(d), S_N and translations on padded point clouds.

Conventions (DESIGN section 1): a system is `x [..., N, d]`, features
`h [..., N, F]`, `mask [..., N]` (1 for real atoms). Orthogonal matrices act on
the right of point rows, `R . x = x @ R^T`; permutations act on the atom axis,
`(p . x)_i = x_{p[i]}`, on `x`, `h` and `mask` together. Padded rows stay zero.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.validation import (
    check_binary_mask,
    check_finite,
    check_permutations,
    check_points,
    check_rotation,
    check_shape,
    default_mask,
    is_concrete,
    poison,
    valid_permutations,
)


def binary(m: jax.Array) -> jax.Array:
    """True when every entry of the mask `m` is 0 or 1."""
    return jnp.all((m == 0) | (m == 1))


def _mask_or_ones(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    check_binary_mask(mask)
    return default_mask(x, mask).astype(x.dtype)


def rotate(x: jax.Array, R: jax.Array) -> jax.Array:
    """Applies `R [..., d, d]` to every point of `x [..., N, d]`: `x @ R^T`.

    Leading dimensions broadcast, so one rotation can act on a batch or a batch
    of rotations on one point cloud.

    Raises:
      ValueError: `x` not `[..., N, d]`, `R` not `[..., d, d]`, or, for concrete arrays, NaN/Inf in `x` or `R`. Under jit non-finite
        values propagate as NaN/Inf.
    """
    check_points(x)
    check_rotation(R, x.shape[-1])
    check_finite(x, "x")
    check_finite(R, "R")
    return jnp.matmul(x, jnp.swapaxes(R, -1, -2))


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean over real atoms: `[..., N, d] -> [..., 1, d]` (zero for an empty mask).

    Raises ValueError for a concrete mask with values other than 0 and 1; under jit
    such a mask gives NaN.
    """
    m = _mask_or_ones(x, mask)
    if mask is not None:
        m = poison(m, binary(m))  # NaN mask, NaN mean: poisoned before the sums, not after
    count = jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1.0)
    return jnp.sum(x * m[..., None], axis=-2, keepdims=True) / count[..., None]


def remove_com(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Projects onto the CoM-free subspace U: subtracts the masked mean.

    SymDiff (paper 002) section 2.3, `proj_U`. Padded rows stay exactly zero.

    Raises ValueError for a concrete mask with values other than 0 and 1 or concrete
    NaN/Inf in `x`; under jit such a mask gives NaN and NaN/Inf in `x` propagate.
    """
    check_points(x)
    check_finite(x, "x")
    m = _mask_or_ones(x, mask)
    return (x - masked_mean(x, mask)) * m[..., None]  # a non-binary mask: NaN mean, NaN out


def com_free_normal(key: jax.Array, shape, mask: jax.Array | None = None, dtype=None) -> jax.Array:
    """A standard normal `[..., N, d]` projected onto U, zero on padded rows.

    This is `N_U(0, I)` of SymDiff section 2.3 (Xu et al., 2022): restricted to
    the real atoms it has identity covariance on the (n - 1) d dimensional
    subspace of zero centre of mass.
    """
    dtype = dtype or jnp.result_type(float)
    eps = jax.random.normal(key, check_shape(shape), dtype)
    return remove_com(eps, mask)


def masked_normal(key: jax.Array, shape, mask: jax.Array | None = None, dtype=None) -> jax.Array:
    """A standard normal `[..., N, F]` with padded rows set to zero (features h)."""
    dtype = dtype or jnp.result_type(float)
    eps = jax.random.normal(key, check_shape(shape), dtype)
    return eps * _mask_or_ones(eps, mask)[..., None]


def reflection(normal: jax.Array) -> jax.Array:
    """The reflection `I - 2 n n^T / |n|^2` through the plane with normal `n [..., d]`.

    Raises ValueError for a concrete normal that is zero or not finite; under jit
    such a normal gives NaN.
    """
    check_finite(normal, "normal")
    if is_concrete(normal):
        norms = np.linalg.norm(np.asarray(normal), axis=-1)
        if np.any(norms == 0):
            raise ValueError("normal must be a non-zero vector; got a zero normal.")
    n = normal / jnp.linalg.norm(normal, axis=-1, keepdims=True)
    eye = jnp.eye(normal.shape[-1], dtype=normal.dtype)
    return eye - 2.0 * n[..., :, None] * n[..., None, :]


def random_reflection(key: jax.Array, dim: int = 3, shape=(), dtype=None) -> jax.Array:
    """A reflection through a uniformly random plane, `[*shape, dim, dim]`."""
    dtype = dtype or jnp.result_type(float)
    return reflection(jax.random.normal(key, tuple(shape) + (dim,), dtype))


def random_permutation(key: jax.Array, mask: jax.Array) -> jax.Array:
    """A uniform permutation `[N]` of the real atoms; padded slots map to themselves.

    The result `p` satisfies `mask[p] == mask`, so `permute` keeps padding in
    place whatever the layout of the mask. Use `jax.vmap` for a batch.
    """
    if mask.ndim != 1:
        raise ValueError(
            f"random_permutation takes one mask [N]; got shape {mask.shape}. Use jax.vmap."
        )
    check_binary_mask(mask)
    n = mask.shape[0]
    real = mask > 0
    index = jnp.arange(n)
    # Real atoms first (stable), padded after: the slots the permutation fills.
    slots = jnp.argsort(jnp.where(real, 0, 1), stable=True)
    # The same layout with the real atoms shuffled among themselves.
    noise = jax.random.uniform(key, (n,))
    sources = jnp.argsort(jnp.where(real, noise, 2.0 + index), stable=True)
    return jnp.zeros(n, jnp.int32).at[slots].set(sources.astype(jnp.int32))


def permute(a: jax.Array, perm: jax.Array, axis: int = -2) -> jax.Array:
    """Reorders the atom axis: `out[..., i, :] = a[..., perm[i], :]`.

    `axis=-2` for `x [..., N, d]` and `h [..., N, F]`; `axis=-1` for `mask [..., N]`.
    `perm [..., N]` broadcasts against the leading dimensions of `a`.

    Raises ValueError for a concrete `perm` with a row that is not a permutation of
    0..N-1; under jit such a `perm` gives NaN for a floating `a` (integer arrays have
    no NaN: their result is then unspecified).
    """
    check_permutations(perm, "perm")
    if perm.shape[-1] != a.shape[axis]:
        raise ValueError(
            f"permutation of length {perm.shape[-1]} cannot act on axis {axis} of an array of shape {a.shape}."
        )
    idx = (
        perm if axis == -1 else jnp.expand_dims(perm, tuple(range(perm.ndim, perm.ndim - axis - 1)))
    )
    idx = jnp.broadcast_to(
        idx, a.shape[: a.ndim + axis] + (perm.shape[-1],) + a.shape[a.ndim + axis + 1 :]
    )
    out = jnp.take_along_axis(a, idx, axis=axis)
    if jnp.issubdtype(out.dtype, jnp.inexact):
        out = poison(out, valid_permutations(perm))
    return out


def invert_permutation(perm: jax.Array) -> jax.Array:
    """The inverse permutation: `permute(permute(a, p), invert_permutation(p)) == a`."""
    return jnp.argsort(perm, axis=-1).astype(perm.dtype)


class SNxO(NamedTuple):
    """An element (p, R) of S_N x O(d): permutation `perm [N]`, `rotation [d, d]`."""

    perm: jax.Array
    rotation: jax.Array


def act(g: SNxO, x: jax.Array, h: jax.Array | None = None, mask: jax.Array | None = None):
    """The S_N x O(d) action of SymDiff eq. (6) on `(x, h, mask)`.

    Returns `(rotate(permute(x, p), R), permute(h, p), permute(mask, p))`;
    `h` and `mask` may be None and are then returned as None.
    """
    x_out = rotate(permute(x, g.perm), g.rotation)
    h_out = None if h is None else permute(h, g.perm)
    m_out = None if mask is None else permute(mask, g.perm, axis=-1)
    return x_out, h_out, m_out


def compose(g1: SNxO, g2: SNxO) -> SNxO:
    """The product `g1 g2`: `act(compose(g1, g2), .) == act(g1, act(g2, .))`."""
    return SNxO(
        perm=permute(g2.perm, g1.perm, axis=-1), rotation=jnp.matmul(g1.rotation, g2.rotation)
    )


def inverse(g: SNxO) -> SNxO:
    """The inverse element: `compose(g, inverse(g))` is the identity."""
    return SNxO(perm=invert_permutation(g.perm), rotation=jnp.swapaxes(g.rotation, -1, -2))


def identity(num_atoms: int, dim: int = 3, dtype=None) -> SNxO:
    """The identity of S_N x O(d)."""
    dtype = dtype or jnp.result_type(float)
    return SNxO(perm=jnp.arange(num_atoms, dtype=jnp.int32), rotation=jnp.eye(dim, dtype=dtype))


def random_element(
    key: jax.Array, mask: jax.Array, dim: int = 3, special: bool = False, dtype=None
) -> SNxO:
    """A random (p, R): p uniform on the real atoms, R Haar on O(dim) or SO(dim)."""
    from symdiff_jax.groups.haar import haar_orthogonal, haar_special_orthogonal

    kp, kr = jax.random.split(key)
    sampler = haar_special_orthogonal if special else haar_orthogonal
    return SNxO(perm=random_permutation(kp, mask), rotation=sampler(kr, dim, (), dtype))
