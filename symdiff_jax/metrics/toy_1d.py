"""Metrics of the 1D reflection toy (paper 000, section 4.1, Table 1).

The target distribution is the orbit of the single datum +1 under G = {+1, -1}, with equal
mass: `1/2 delta_{-1} + 1/2 delta_{+1}`. Two numbers describe how close samples are:

- `mean_abs_to_nearest`: mean distance to the nearest orbit point, `mean |x - sign(x)|`
  for the orbit {-1, +1}. The paper's Table 1 and its reference code call this "RMSD",
  but it is a mean absolute deviation, not a root mean square.
- `w2_to_atoms`: the exact 2-Wasserstein distance between the empirical measure of the
  samples and a finite discrete measure on the line, through the quantile (monotone)
  coupling, which is optimal in 1D.

All functions are pure jnp and jit-compatible.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array


def _as_samples(samples) -> Array:
    x = jnp.asarray(samples)
    if x.ndim == 2 and x.shape[-1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(
            "samples must be a non-empty 1D array [n] (or [n, 1]) of scalar samples; "
            f"got shape {x.shape}."
        )
    return x


def mean_abs_to_nearest(samples, points: Sequence[float] | Array = (-1.0, 1.0)) -> Array:
    """Mean distance from each sample to its nearest point of a finite set (paper 000 "RMSD").

    With `points = (-1, 1)` this is `mean_i |x_i - sign(x_i)|`, the "RMSD" of paper 000's
    Table 1 as its reference code computes it.

    Args:
      samples: `[n]` or `[n, 1]` scalar samples.
      points: `[K]` the target set (the orbit of the data).

    Returns:
      A scalar, `mean_i min_k |x_i - p_k|`.
    """
    x = _as_samples(samples)
    p = jnp.asarray(points, x.dtype).reshape(-1)
    return jnp.mean(jnp.min(jnp.abs(x[:, None] - p[None, :]), axis=-1))


def w2_to_atoms(
    samples,
    atoms: Sequence[float] | Array = (-1.0, 1.0),
    weights: Sequence[float] | Array | None = None,
) -> Array:
    """Exact W2 between the empirical measure of `samples` and `sum_k w_k delta_{a_k}`.

    In 1D the optimal coupling is the quantile coupling, so

        W2^2 = int_0^1 (F^{-1}(u) - G^{-1}(u))^2 du,

    with `F^{-1}(u) = x_(i)` (the i-th order statistic) on `((i-1)/n, i/n]` and
    `G^{-1}(u) = a_k` on `(c_{k-1}, c_k]`, `c_k = w_1 + ... + w_k`. The integral is a finite
    sum: sample `i` sends the length of `((i-1)/n, i/n] ∩ (c_{k-1}, c_k]` to atom `k`. For
    an even `n` and two equal-weight atoms this is the reference code's
    `sqrt(mean((sort(x) - [-1]*n/2 + [+1]*n/2)^2))`; for odd `n` the middle sample is split.

    Args:
      samples: `[n]` or `[n, 1]` scalar samples, equal mass `1/n` each.
      atoms: `[K]` atom locations (any order; sorted internally).
      weights: `[K]` nonnegative atom masses (normalised internally); default uniform.

    Returns:
      A scalar, the W2 distance.
    """
    x = jnp.sort(_as_samples(samples))
    a = jnp.asarray(atoms, x.dtype).reshape(-1)
    k = a.shape[0]
    if weights is None:
        w = jnp.full((k,), 1.0 / k, x.dtype)
    else:
        w = jnp.asarray(weights, x.dtype).reshape(-1)
        if w.shape != a.shape:
            raise ValueError(
                f"weights must have one entry per atom: atoms has shape {a.shape}, "
                f"weights has shape {w.shape}."
            )
        w = w / jnp.sum(w)
    order = jnp.argsort(a)
    a, w = a[order], w[order]
    n = x.shape[0]
    c = jnp.concatenate([jnp.zeros((1,), x.dtype), jnp.cumsum(w)])
    c = c.at[-1].set(1.0)  # exact upper end despite rounding
    # Work in units of 1/n: sample i covers [i, i + 1).
    lo_i = jnp.arange(n, dtype=x.dtype)[:, None]
    lo = jnp.clip(c[None, :-1] * n, lo_i, lo_i + 1.0)
    hi = jnp.clip(c[None, 1:] * n, lo_i, lo_i + 1.0)
    overlap = hi - lo  # [n, K], rows sum to 1
    w2_sq = jnp.sum(overlap * (x[:, None] - a[None, :]) ** 2) / n
    return jnp.sqrt(w2_sq)


def w2_to_reflection_orbit(samples) -> Array:
    """W2 between the samples and the balanced orbit `1/2 delta_{-1} + 1/2 delta_{+1}`.

    Args:
      samples: `[n]` or `[n, 1]` scalar samples.

    Returns:
      A scalar (see `w2_to_atoms`).
    """
    return w2_to_atoms(samples, (-1.0, 1.0))


def positive_branch_error(samples, target: float = 1.0) -> Array:
    """Validation error of the reference code: `mean |x - target|` over the samples `x > 0`.

    Samples started from `|N(0, 1)|` with an odd denoiser should land near +1; the ones that
    land at or below 0 are left out, as in the reference. Returns `+inf` when no sample is
    positive (so a checkpoint with that outcome is never selected as the best).

    Args:
      samples: `[n]` or `[n, 1]` scalar samples.
      target: the positive orbit point.

    Returns:
      A scalar.
    """
    x = _as_samples(samples)
    pos = x > 0
    count = jnp.sum(pos)
    total = jnp.sum(jnp.where(pos, jnp.abs(x - target), 0.0))
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.inf)
