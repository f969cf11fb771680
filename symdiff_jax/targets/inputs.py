"""Input checks and group parsing shared by the estimators of the symmetrised target.

A group argument is either a name or a finite group given by its matrices. Every
supported group factors as (continuous part) x (finite part):

    "SO3" = SO(3) x {I}            "O3" = SO(3) x {I, diag(1, 1, -1)}
    "SO2" = SO(2) x {I}            "O2" = SO(2) x {I, diag(1, -1)}
    "trivial" = {I}                matrices [K, d, d] = {g_1, .., g_K}

(Haar on O(d) is the equal mixture of Haar on SO(d) and its image under a fixed
reflection.) Permutations of the atoms multiply the finite part.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.groups.names import GROUP_DIMS
from symdiff_jax.validation import (
    check_binary_mask,
    check_finite,
    check_orthogonal,
    check_permutations,
    check_positive,
    is_concrete,
    orthogonality_error,
    orthogonality_tolerance,
    valid_permutations,
)

GROUP_NAMES = (*GROUP_DIMS, "trivial")


class GroupSpec(NamedTuple):
    """A parsed group: `continuous` in {"SO3", "SO2", None} and finite `matrices [K, d, d]`."""

    name: str
    continuous: str | None
    matrices: jax.Array | None
    valid: jax.Array | bool = True  # False (under jit) when the matrices are not orthogonal


class Inputs(NamedTuple):
    """Validated inputs with padded rows zeroed, all in one floating dtype."""

    x_t: jax.Array  # [N, d]
    x0: jax.Array  # [M, N, d]
    alpha: jax.Array  # []
    sigma: jax.Array  # []
    mask: jax.Array  # [N], ones when no mask was given
    permutations: jax.Array | None  # [P, N] int
    log_weights: jax.Array  # [M]
    valid: jax.Array  # [] bool; False under jit when a value check would have raised


def parse_group(group, dim: int, dtype) -> GroupSpec:
    """Turns a group name or a stack of matrices into a `GroupSpec`, checking `dim`."""
    if isinstance(group, str):
        if group not in GROUP_NAMES:
            raise ValueError(
                f"Unknown group {group!r}; expected one of {list(GROUP_NAMES)} or a finite "
                "group given as matrices of shape [K, d, d]."
            )
        if group in GROUP_DIMS and GROUP_DIMS[group] != dim:
            raise ValueError(
                f"Group {group!r} acts on {GROUP_DIMS[group]}-dimensional points but the data "
                f"has dimension d = {dim} (last axis of x_t and x0). Pick a group of "
                "matching dimension: 'O3'/'SO3' for d = 3, 'O2'/'SO2' for d = 2, 'trivial' "
                "or matrices [K, d, d] for any d."
            )
        if group == "O3":
            return GroupSpec(
                group,
                "SO3",
                jnp.stack([jnp.eye(3, dtype=dtype), jnp.diag(jnp.array([1.0, 1.0, -1.0], dtype))]),
            )
        if group == "O2":
            return GroupSpec(
                group,
                "SO2",
                jnp.stack([jnp.eye(2, dtype=dtype), jnp.diag(jnp.array([1.0, -1.0], dtype))]),
            )
        if group in ("SO3", "SO2"):
            return GroupSpec(group, group, None)
        return GroupSpec(group, None, None)
    matrices = jnp.asarray(group)
    if matrices.ndim != 3 or matrices.shape[1:] != (dim, dim):
        raise ValueError(
            f"A finite group must be given as matrices of shape [K, d, d] with d = {dim} "
            f"(the dimension of the data); got shape {matrices.shape}."
        )
    if matrices.shape[0] < 1:
        raise ValueError("A finite group needs at least one element; got an empty stack.")
    check_orthogonal(matrices, "group (finite group matrices)")
    matrices = matrices.astype(dtype)
    valid = orthogonality_error(matrices) <= orthogonality_tolerance(dtype)
    return GroupSpec("finite", None, matrices, valid)


def check_inputs(
    x_t, x0, alpha, sigma, mask=None, permutations=None, bank_log_weights=None
) -> Inputs:
    """Checks shapes, casts to one floating dtype and zeroes padded rows.

    Raises:
      ValueError: with the offending shape when x_t is not [N, d], x0 not [M, N, d]
        with the same N and d, alpha or sigma not scalars, mask not [N],
        permutations not an integer [P, N] array, bank_log_weights not [M]; and, when
        the values are concrete, with the offending value when x_t, x0, alpha or
        bank_log_weights (NaN or +Inf there) hold NaN/Inf, sigma is not > 0, the mask holds values other
        than 0 and 1, or a row of permutations is not a permutation of 0..N-1. Under
        jit the same conditions set `Inputs.valid` to False instead.
    """
    x_t = jnp.asarray(x_t)
    x0 = jnp.asarray(x0)
    if x_t.ndim != 2:
        raise ValueError(
            f"x_t must be one noisy point cloud of shape [N, d]; got shape {x_t.shape}. "
            "For a batch use jax.vmap."
        )
    if x0.ndim != 3:
        raise ValueError(
            f"x0 must be a bank of clean samples of shape [M, N, d]; got shape {x0.shape}. "
            "For a single sample (its own orbit) pass x0[None]."
        )
    if x0.shape[1:] != x_t.shape:
        raise ValueError(
            f"x0 of shape {x0.shape} does not match x_t of shape {x_t.shape}: need "
            "x0 [M, N, d] with the same N (atoms, padding included) and d as x_t [N, d]."
        )
    if x0.shape[0] < 1:
        raise ValueError("x0 must hold at least one clean sample; got M = 0.")
    dtype = jnp.result_type(x_t.dtype, x0.dtype, float)
    x_t, x0 = x_t.astype(dtype), x0.astype(dtype)
    alpha, sigma = jnp.asarray(alpha), jnp.asarray(sigma)
    for name, value in (("alpha", alpha), ("sigma", sigma)):
        if value.ndim != 0:
            raise ValueError(
                f"{name} must be a scalar (one noise level per call); got shape {value.shape}. "
                "For a batch of noise levels use jax.vmap."
            )
    n = x_t.shape[0]
    if mask is None:
        mask_ = jnp.ones((n,), dtype)
    else:
        mask_ = jnp.asarray(mask)
        if mask_.shape != (n,):
            raise ValueError(
                f"mask must have shape [N] = ({n},) to match x_t of shape {x_t.shape}; "
                f"got shape {mask_.shape}."
            )
        mask_ = mask_.astype(dtype)
    if permutations is not None:
        permutations = jnp.asarray(permutations)
        if permutations.ndim != 2 or permutations.shape[1] != n:
            raise ValueError(
                f"permutations must be an integer array of shape [P, N] with N = {n}; got "
                f"shape {permutations.shape}. Each row p acts as x -> x[p]."
            )
        if not jnp.issubdtype(permutations.dtype, jnp.integer):
            raise ValueError(
                f"permutations must be integers (atom indices); got dtype {permutations.dtype}."
            )
    m = x0.shape[0]
    if bank_log_weights is None:
        log_w = jnp.zeros((m,), dtype)
    else:
        log_w = jnp.asarray(bank_log_weights)
        if log_w.shape != (m,):
            raise ValueError(
                f"bank_log_weights must have shape [M] = ({m},), one log prior weight per "
                f"clean sample of x0 {x0.shape}; got shape {log_w.shape}."
            )
        log_w = log_w.astype(dtype)
    for name, value in (("x_t", x_t), ("x0", x0), ("alpha", alpha)):
        check_finite(value, name)
    check_positive(sigma, "sigma")
    check_binary_mask(mask)
    check_permutations(permutations)
    if bank_log_weights is not None and is_concrete(bank_log_weights):
        lw = np.asarray(bank_log_weights)
        if np.any(np.isnan(lw) | (lw == np.inf)):
            raise ValueError(
                f"bank_log_weights must be log weights in [-inf, inf) without NaN; got {lw.tolist()}."
            )
    alpha, sigma = alpha.astype(dtype), sigma.astype(dtype)
    valid = (
        (sigma > 0)
        & jnp.isfinite(sigma)
        & jnp.isfinite(alpha)
        & jnp.all(jnp.isfinite(x_t))
        & jnp.all(jnp.isfinite(x0))
        & jnp.all((mask_ == 0) | (mask_ == 1))
        & ~jnp.any(jnp.isnan(log_w) | (log_w == jnp.inf))
    )
    if permutations is not None:
        valid = valid & valid_permutations(permutations)
    x_t = x_t * mask_[:, None]
    x0 = x0 * mask_[None, :, None]
    return Inputs(x_t, x0, alpha, sigma, mask_, permutations, log_w, valid)


def expand_bank(
    x0: jax.Array,
    log_weights: jax.Array,
    matrices: jax.Array | None = None,
    permutations: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """All images `g . x0_m` under a finite group, as a flat bank.

    The element `(p, g)` acts by `x -> x[p] @ g^T` (atoms reordered, then every
    point transformed; the two commute).

    Args:
      x0: `[M, N, d]` clean samples.
      log_weights: `[M]` log prior weights of the samples.
      matrices: optional `[K, d, d]` orthogonal matrices.
      permutations: optional `[P, N]` atom permutations.
      mask: optional `[N]`; padded rows of the result are zeroed.

    Returns:
      `(bank [P K M, N, d], log_weights [P K M])`, ordered permutation-major.
    """
    bank = x0[None]  # [1, M, N, d]
    if permutations is not None:
        bank = jnp.take(x0, permutations, axis=1)  # [M, P, N, d]
        bank = jnp.swapaxes(bank, 0, 1)  # [P, M, N, d]
    if mask is not None:
        bank = bank * mask[:, None]
    if matrices is not None:
        bank = jnp.einsum("pmnj,kij->pkmni", bank, matrices)  # [P, K, M, N, d]
    else:
        bank = bank[:, None]
    p, k, m = bank.shape[:3]
    flat = bank.reshape((p * k * m,) + x0.shape[1:])
    log_w = jnp.broadcast_to(log_weights, (p, k, m)).reshape(-1)
    return flat, log_w


def posterior_mean(logits: jax.Array, means: jax.Array, mask: jax.Array) -> jax.Array:
    """Self-normalised average `sum_b softmax(logits)_b means_b`, padded rows zeroed.

    Args:
      logits: `[B]` log weights (any constant offset cancels).
      means: `[B, N, d]` per-component means.
      mask: `[N]`.

    Returns:
      `[N, d]`.
    """
    weights = jax.nn.softmax(logits)
    return jnp.einsum("b,bnd->nd", weights, means) * mask[:, None]
