"""Optimal alignment of point clouds: Kabsch rotations and aligned RMSD.

`kabsch` finds the orthogonal matrix that best superimposes one point cloud on
another (Kabsch 1976; Umeyama 1991 for the reflection-free SVD correction);
`aligned_rmsd` is the RMSD left after the best rotation (optionally with
reflections), translation and atom permutation. This is the metric of the 2D
toy of paper 000 (section 4.1, Fig. 3c): generated samples are compared with
the ground truth up to the symmetry group the model was built for.

All functions take `[..., N, d]` arrays and an optional `mask [..., N]`, work
for any dimension d and broadcast over leading axes.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.validation import check_points, default_mask, finite_matrices, poison

_MAX_DEFAULT_PERMUTATIONS = 5040  # 7!: beyond this, pass the permutations explicitly.


def _mask_or_ones(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    return jnp.broadcast_to(default_mask(x, mask).astype(x.dtype), x.shape[:-1])


def _centre(x: jax.Array, m: jax.Array) -> jax.Array:
    count = jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1.0)
    mean = jnp.sum(x * m[..., None], axis=-2, keepdims=True) / count[..., None]
    return (x - mean) * m[..., None]


def kabsch(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None = None,
    allow_reflection: bool = False,
    center: bool = True,
) -> jax.Array:
    """The orthogonal `R` minimising `sum_i mask_i ||x_i - R y_i||^2` (Kabsch).

    With `M = sum_i mask_i x_i y_i^T = U S V^T` (SVD), the minimiser over O(d) is
    `R = U V^T`; over SO(d) it is `U diag(1, .., 1, det(U V^T)) V^T` (Kabsch 1976,
    with the sign correction of Umeyama 1991). So `rotate(y, R) = y @ R^T` is the
    best superposition of `y` on `x`.

    Args:
      x: `[..., N, d]` reference points.
      y: `[..., N, d]` points to rotate onto `x` (same shape as `x`, or
        broadcastable to it).
      mask: optional `[..., N]`, 1 for real points.
      allow_reflection: search O(d) instead of SO(d).
      center: subtract the masked means of `x` and `y` first (then the optimal
        translation is the difference of the means); if False, rotate about the
        origin.

    Returns:
      `[..., d, d]` orthogonal matrices; NaN where `x` or `y` holds NaN or Inf (the SVD
      never sees them, with or without jit).
    """
    check_points(x, "x")
    check_points(y, "y")
    if x.shape[-1] != y.shape[-1] or x.shape[-2] != y.shape[-2]:
        raise ValueError(
            f"x and y must have the same number of points and dimension; got shapes "
            f"{x.shape} and {y.shape}."
        )
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    x, y = jnp.broadcast_arrays(x.astype(dtype), y.astype(dtype))
    m = _mask_or_ones(x, mask)
    if center:
        x, y = _centre(x, m), _centre(y, m)
    cov = jnp.einsum("...ni,...nj->...ij", x * m[..., None], y)
    safe, finite = finite_matrices(cov)
    u, _, vt = jnp.linalg.svd(safe)
    u, vt = poison(u, finite), poison(vt, finite)
    r = u @ vt
    if allow_reflection:
        return r
    det = jnp.sign(jnp.linalg.det(r))
    det = jnp.where(det == 0, 1.0, det).astype(dtype)
    d = x.shape[-1]
    signs = jnp.concatenate([jnp.ones(r.shape[:-2] + (d - 1,), dtype), det[..., None]], axis=-1)
    return (u * signs[..., None, :]) @ vt


def rmsd(x: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Root-mean-square deviation `sqrt(sum_i m_i ||x_i - y_i||^2 / sum_i m_i)`, no alignment.

    Returns:
      `[...]`, one value per point cloud.
    """
    m = _mask_or_ones(x, mask)
    sq = jnp.sum((x - y) ** 2, axis=-1)
    return jnp.sqrt(jnp.sum(sq * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0))


def kabsch_rmsd(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None = None,
    allow_reflection: bool = True,
    center: bool = True,
) -> jax.Array:
    """RMSD between `x` and `y` after the optimal orthogonal superposition (`kabsch`).

    Returns:
      `[...]`, one value per point cloud.
    """
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    x, y = jnp.broadcast_arrays(x.astype(dtype), y.astype(dtype))
    m = _mask_or_ones(x, mask)
    if center:
        x, y = _centre(x, m), _centre(y, m)
    r = kabsch(x, y, m, allow_reflection=allow_reflection, center=False)
    return rmsd(x, y @ jnp.swapaxes(r, -1, -2), m)


def all_permutations(num_points: int) -> np.ndarray:
    """Every permutation of `range(num_points)` as an int32 array `[num_points!, num_points]`."""
    count = math.factorial(num_points)
    if count > _MAX_DEFAULT_PERMUTATIONS:
        raise ValueError(
            f"{num_points} points have {count} permutations, more than the "
            f"{_MAX_DEFAULT_PERMUTATIONS} enumerated by default; pass `permutations` "
            "explicitly (e.g. the automorphisms of the molecular graph)."
        )
    return np.asarray(list(itertools.permutations(range(num_points))), np.int32)


def aligned_rmsd(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None = None,
    permutations: jax.Array | None = None,
    allow_reflection: bool = True,
    center: bool = True,
) -> jax.Array:
    """RMSD after the best translation, rotation (reflection) and permutation of `y`.

    `min_p min_R sqrt(mean_i ||x_i - R y_{p(i)}||^2)` over the permutations `p`
    given (all `N!` permutations by default, for `N <= 7`) and `R` in O(d)
    (`allow_reflection`) or SO(d); both clouds are centred first (`center`).
    This is the RMSD of the 2D toy of paper 000 (Fig. 3c) with the S_4 x O(2)
    symmetry of its data.

    Args:
      x: `[..., N, d]` points (e.g. samples of a model).
      y: `[..., N, d]` reference points (e.g. the ground truth); broadcasts
        against `x`, so one reference can serve a batch of samples.
      mask: optional `[..., N]`, 1 for real points. Permutations that move a
        real point onto a padded slot are skipped.
      permutations: optional int array `[P, N]`; row `p` compares `x_i` with
        `y_{p[i]}`. Include the identity if "no permutation" is allowed.
      allow_reflection: align over O(d) (True) or SO(d) (False).
      center: remove the masked means before aligning.

    Returns:
      `[...]`, the smallest RMSD per point cloud.
    """
    check_points(x, "x")
    check_points(y, "y")
    n = x.shape[-2]
    if permutations is None:
        permutations = all_permutations(n)
    permutations = jnp.asarray(permutations)
    if permutations.ndim != 2 or permutations.shape[-1] != n:
        raise ValueError(
            f"permutations must be an integer array [P, N] with N = {n}; got shape "
            f"{permutations.shape}."
        )
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    x, y = jnp.broadcast_arrays(x.astype(dtype), y.astype(dtype))
    m = _mask_or_ones(x, mask)

    def one(perm):
        y_p = jnp.take(y, perm, axis=-2)
        m_p = jnp.take(m, perm, axis=-1)
        value = kabsch_rmsd(x, y_p, m, allow_reflection=allow_reflection, center=center)
        valid = jnp.all(m_p == m, axis=-1)
        return jnp.where(valid, value, jnp.inf)

    return jnp.min(jax.vmap(one)(permutations), axis=0)


def superimpose(
    x: jax.Array,
    reference: jax.Array,
    mask: jax.Array | None = None,
    permutations: jax.Array | None = None,
    allow_reflection: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Moves `x` onto `reference` by the best permutation, orthogonal map and translation.

    For each permutation `p`, `x_p` (rows `x_{p[i]}`) is centred, Kabsch-rotated
    onto the centred reference and translated to the reference's centre; the
    permutation with the smallest RMSD wins. Useful to plot samples of a
    symmetric model on top of the ground truth (paper 000, Fig. 3b).

    Args:
      x: `[..., N, d]` points to move.
      reference: `[..., N, d]` target points (broadcasts against `x`).
      mask: optional `[..., N]`; padded rows come back zero.
      permutations: optional `[P, N]` (default: all `N!`, `N <= 7`).
      allow_reflection: use O(d) (True) or SO(d) (False).

    Returns:
      `(x_aligned [..., N, d], rmsd [...])`: the moved points and their RMSD to
      the reference, which equals `aligned_rmsd(x, reference, ...)`.
    """
    check_points(x, "x")
    check_points(reference, "reference")
    n = x.shape[-2]
    perms = jnp.asarray(all_permutations(n) if permutations is None else permutations)
    dtype = jnp.result_type(x.dtype, reference.dtype, float)
    x, y = jnp.broadcast_arrays(x.astype(dtype), reference.astype(dtype))
    m = _mask_or_ones(x, mask)
    count = jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1.0)[..., None]
    y_mean = jnp.sum(y * m[..., None], axis=-2, keepdims=True) / count
    y_c = _centre(y, m)

    def one(perm):
        x_p = jnp.take(x, perm, axis=-2)
        m_p = jnp.take(m, perm, axis=-1)
        x_pc = _centre(x_p, m)
        r = kabsch(y_c, x_pc, m, allow_reflection=allow_reflection, center=False)
        moved = x_pc @ jnp.swapaxes(r, -1, -2)
        value = rmsd(moved, y_c, m)
        valid = jnp.all(m_p == m, axis=-1)
        return (moved + y_mean) * m[..., None], jnp.where(valid, value, jnp.inf)

    moved, values = jax.vmap(one)(perms)  # [P, ..., N, d], [P, ...]
    best = jnp.argmin(values, axis=0)
    pick = jnp.take_along_axis(values, best[None], axis=0)[0]
    aligned = jnp.take_along_axis(moved, best[None, ..., None, None], axis=0)[0]
    return aligned, pick
