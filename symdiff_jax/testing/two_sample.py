"""An exact two-sample test for multivariate samples: energy distance + permutations.

Used by `assert_stochastically_equivariant` to compare two laws of (flattened)
kernel outputs. The energy distance of Szekely and Rizzo (2004, 2013),

    E(P, Q) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|,   X, X' ~ P,  Y, Y' ~ Q,

is zero iff P = Q (for laws with finite first moments), so the test is
consistent against every alternative, including pure covariance changes that
leave the mean alone. The p-value comes from a permutation test: under
H0: P = Q the pooled sample is exchangeable, so

    p = (1 + #{b : T_b >= T_obs}) / (1 + B)

over B random relabellings is *exactly* valid, P(p <= alpha) <= alpha for every
sample size (Lehmann and Romano, Testing Statistical Hypotheses, Thm 15.2.1).
The smallest attainable p-value is 1 / (1 + B): B must exceed 1 / alpha for
the test to be able to reject at level alpha at all. Relabellings are drawn
sequentially (Besag and Clifford, 1991) so that clear non-rejections stop early.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TwoSampleResult(NamedTuple):
    """Outcome of a two-sample test.

    Attributes:
      statistic: the observed statistic, `n m / (n + m) * E_hat`, E_hat the
        V-statistic estimate of the energy distance.
      pvalue: the permutation p-value, in `[1 / (1 + B), 1]`.
      num_permutations: the number of random relabellings drawn.
    """

    statistic: float
    pvalue: float
    num_permutations: int


def _as_matrix(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim < 1 or a.shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 samples along axis 0; got shape {a.shape}.")
    a = a.reshape(a.shape[0], -1)
    if not np.all(np.isfinite(a)):
        raise ValueError(
            f"{name} holds non-finite values (NaN or Inf); the test needs finite samples."
        )
    return a


def pairwise_distances(z: np.ndarray) -> np.ndarray:
    """Euclidean distances `[M, M]` between the rows of `z [M, D]`, in float64."""
    sq = np.sum(z * z, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def energy_statistics(dist: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Energy statistics `[B]` of the pooled distances `[M, M]` for labellings `[M, B]` (0/1).

    For a labelling `a` (1 for the first sample, n ones) and `b = 1 - a` (m ones),
    with `s = D 1` and `S = 1^T D 1` the three sums are
    `a^T D a`, `a^T D b = a.s - a^T D a` and `b^T D b = S - 2 a.s + a^T D a`,
    so one matrix product `D @ labels` serves all B labellings.
    """
    labels = labels.astype(np.float64)
    n = labels.sum(axis=0)
    m = labels.shape[0] - n
    row_sums = dist.sum(axis=1)
    total = row_sums.sum()
    a_s = row_sums @ labels
    a_d_a = np.einsum("ib,ib->b", labels, dist @ labels)
    a_d_b = a_s - a_d_a
    b_d_b = total - 2.0 * a_s + a_d_a
    energy = 2.0 * a_d_b / (n * m) - a_d_a / n**2 - b_d_b / m**2
    return n * m / (n + m) * energy


def energy_test(
    a,
    b,
    *,
    num_permutations: int = 1999,
    seed: int = 0,
    stop_after: int | None = 10,
    chunk_size: int = 1000,
) -> TwoSampleResult:
    """Permutation test of H0: `a` and `b` are samples of the same law (energy distance).

    With `stop_after = h` the relabellings are drawn sequentially and the test
    stops as soon as h of them reach the observed statistic, with p-value
    `h / l` after l relabellings; if that never happens within B relabellings,
    `p = (1 + g) / (1 + B)` with g the exceedances. This is the sequential Monte
    Carlo p-value of Besag and Clifford (1991, Biometrika 78(2), 301-304),
    exactly valid like the fixed-B one (P(p <= u) <= u), and it makes the
    common case (no difference, large p) cost about `h (1 + log(B / h))`
    relabellings instead of B. Early stopping never gives p below `h / B`,
    so small p-values, and rejections, always come from the full B.

    Args:
      a: `[n, ...]` samples (each flattened to a vector).
      b: `[m, ...]` samples of the same trailing shape.
      num_permutations: B, the largest number of random relabellings; the
        smallest attainable p-value is `1 / (1 + B)`.
      seed: seed of the numpy generator that draws the relabellings.
      stop_after: h for the sequential p-value; None always runs all B.
      chunk_size: most relabellings evaluated per matrix product (memory vs. speed).

    Returns:
      A `TwoSampleResult(statistic, pvalue, num_permutations)` (the number of
      relabellings actually drawn). Rejecting when `pvalue <= alpha` has
      false-alarm rate at most alpha.

    Cost: one `[M, M]` distance matrix (M = n + m) and `M^2` multiply-adds per
    relabelling.
    """
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must have the same number of features per sample; got {a.shape[1]} and "
            f"{b.shape[1]}."
        )
    if num_permutations < 1:
        raise ValueError(f"num_permutations must be >= 1; got {num_permutations}.")
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be None or >= 1; got {stop_after}.")
    n, m = a.shape[0], b.shape[0]
    # Centre and scale by one pooled constant: the test is invariant to it, the
    # distances are better conditioned.
    z = np.concatenate([a, b], axis=0)
    z = z - z.mean(axis=0)
    scale = np.sqrt(np.mean(np.sum(z * z, axis=1)))
    if scale > 0:
        z = z / scale
    dist = pairwise_distances(z)
    observed_labels = np.concatenate([np.ones(n), np.zeros(m)])
    observed = float(energy_statistics(dist, observed_labels[:, None])[0])
    # Relabellings equal to the observed one up to rounding count as ties (conservative).
    threshold = observed - 1e-9 * max(abs(observed), 1e-12)
    rng = np.random.default_rng(seed)
    exceed, done = 0, 0
    chunk = min(chunk_size, 128) if stop_after is not None else chunk_size
    while done < num_permutations:
        k = min(chunk, num_permutations - done)
        labels = rng.permuted(np.tile(observed_labels, (k, 1)), axis=1).T
        hits = energy_statistics(dist, labels) >= threshold
        if stop_after is not None:
            reached = np.flatnonzero(exceed + np.cumsum(hits) >= stop_after)
            if reached.size:
                used = done + int(reached[0]) + 1
                return TwoSampleResult(observed * scale, stop_after / used, used)
        exceed += int(np.sum(hits))
        done += k
        chunk = min(2 * chunk, chunk_size)
    pvalue = (1.0 + exceed) / (1.0 + num_permutations)
    return TwoSampleResult(observed * scale, pvalue, num_permutations)
