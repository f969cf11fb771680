"""Molecule-size distribution and a numpy batch iterator for padded molecule datasets.

The size distribution p(N) is the histogram of atom counts of the training split (EDM's
`DistributionNodes`): sampling draws N from it and the NLL adds `log p(N)`.

`batch_iterator` walks a dataset dict (as returned by `load_qm9`) in batches of padded
numpy arrays. Its order depends only on `(seed, epoch)`, so a run resumed at epoch `e`,
batch `k` sees the same batches as an uninterrupted run (`itertools.islice` to skip `k`).
With `bucket_sizes`, molecules are grouped by size and each batch is padded only to its
bucket's size, which saves compute on small molecules (fewer distinct shapes means fewer
recompilations under `jax.jit`: keep the buckets few).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.data.features import featurise

#: EDM adds this to p(N) before the log, so unseen sizes get a finite (very low) log-prob.
LOG_PROB_EPS: float = 1e-30


def size_histogram(num_atoms: Any, max_atoms: int = 29) -> np.ndarray:
    """Counts of molecule sizes: `hist[n]` = number of molecules with `n` atoms.

    Args:
      num_atoms: `[M]` atom counts (e.g. `load_qm9("train")["num_atoms"]`; QM9 sizes are
        3..29).
      max_atoms: largest size (array length is `max_atoms + 1`).

    Returns:
      int64 `[max_atoms + 1]`.

    Raises:
      ValueError: a count outside `[0, max_atoms]`.
    """
    n = np.asarray(num_atoms).astype(np.int64).ravel()
    if n.size and (n.min() < 0 or n.max() > max_atoms):
        raise ValueError(
            f"num_atoms must lie in [0, {max_atoms}]; got values from {n.min()} to {n.max()}. "
            f"Raise max_atoms if the data really has larger molecules."
        )
    return np.bincount(n, minlength=max_atoms + 1).astype(np.int64)


def size_probabilities(histogram: Any) -> np.ndarray:
    """The histogram normalised to a probability vector (float64)."""
    h = np.asarray(histogram, dtype=np.float64)
    total = h.sum()
    if total <= 0 or np.any(h < 0):
        raise ValueError("a size histogram needs nonnegative counts with a positive total.")
    return h / total


def sample_num_atoms(key: jax.Array, histogram: Any, shape: Sequence[int] = ()) -> jax.Array:
    """Draws molecule sizes `N ~ p(N)` from a size histogram.

    Args:
      key: a JAX PRNG key.
      histogram: `[max_atoms + 1]` counts (or probabilities), e.g. from `size_histogram`.
      shape: output shape.

    Returns:
      int32 array of `shape`; only sizes with a positive count occur.
    """
    p = jnp.asarray(size_probabilities(histogram))
    # Sizes never seen get the most negative finite logit rather than -inf: the Gumbel-max
    # draw never picks them either, and no infinity is created (jax_debug_infs stays quiet).
    logits = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), jnp.finfo(p.dtype).min)
    return jax.random.categorical(key, logits, shape=tuple(shape)).astype(jnp.int32)


def num_atoms_log_prob(histogram: Any, num_atoms: Any) -> jax.Array:
    """`log p(N)` under the size histogram, as EDM's `log(p + 1e-30)` (the NLL's size term).

    Args:
      histogram: `[max_atoms + 1]` counts or probabilities.
      num_atoms: integer array of sizes (any shape, values in `[0, max_atoms]`).

    Returns:
      float array shaped like `num_atoms` (float32 unless x64 is enabled).
    """
    p = jnp.asarray(size_probabilities(histogram))
    return jnp.log(p + LOG_PROB_EPS)[jnp.asarray(num_atoms)]


def _batches_of_epoch(
    num_atoms: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None,
    drop_remainder: bool,
    bucket_sizes: tuple[int, ...] | None,
) -> list[tuple[np.ndarray, int | None]]:
    if bucket_sizes is None:
        groups = [(np.arange(len(num_atoms)), None)]
    else:
        bucket = np.searchsorted(np.asarray(bucket_sizes), num_atoms, side="left")
        groups = [(np.flatnonzero(bucket == b), size) for b, size in enumerate(bucket_sizes)]
    batches = []
    for idx, width in groups:
        if rng is not None:
            idx = rng.permutation(idx)
        stop = len(idx) - len(idx) % batch_size if drop_remainder else len(idx)
        batches += [(idx[s : s + batch_size], width) for s in range(0, stop, batch_size)]
    if rng is not None and bucket_sizes is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _check_buckets(
    bucket_sizes, num_atoms: np.ndarray, width: int | None
) -> tuple[int, ...] | None:
    if bucket_sizes is None:
        return None
    sizes = tuple(int(b) for b in bucket_sizes)
    if not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
        raise ValueError(f"bucket_sizes must be increasing positive ints; got {bucket_sizes}.")
    if sizes[-1] < num_atoms.max(initial=0):
        raise ValueError(
            f"the largest bucket ({sizes[-1]}) must hold the largest molecule "
            f"({int(num_atoms.max())} atoms); add a bucket of size {int(num_atoms.max())}."
        )
    if width is not None and sizes[-1] > width:
        raise ValueError(f"bucket sizes {sizes} exceed the data's padded size {width}.")
    return sizes


#: The fixed cost of one compiled sampling batch, in padded atoms: a denoising call of
#: the QM9 SymDiff model on the 2-core CPU takes about 8 ms + 0.23 ms per padded atom
#: (`experiments.benchmark`'s per-shape figures), so a batch is worth ~35 atoms.
CALL_COST_ATOMS: int = 35


def sampling_batches(
    num_atoms: Any,
    batch_size: int,
    *,
    bucket_sizes: Sequence[int] | None = None,
    max_atoms: int = 29,
    row_multiple: int = 8,
    call_cost_atoms: int = CALL_COST_ATOMS,
) -> list[tuple[np.ndarray, int]]:
    """How to sample molecules of given sizes in compiled batches: `[(rows, width), ...]`.

    Without buckets, consecutive molecules fill batches of `batch_size` rows padded to
    `max_atoms` (one shape). With `bucket_sizes`, the molecules, largest first, are cut
    into consecutive batches of `row_multiple * k` rows (or `batch_size`; the last batch
    may be partial and is rounded up to a multiple of `row_multiple`), each padded to the
    smallest bucket width that holds its largest molecule. Of all such cuts the one with
    the least cost is taken, by dynamic programming: the padded atoms of every batch plus
    `call_cost_atoms` per batch, a model of the sampling time. A molecule may therefore
    ride in a wider bucket than its own to fill rows that would otherwise be padding:
    64 QM9 molecules cost ~1,440 atom-equivalents this way, against ~1,730 when every
    molecule keeps to its own bucket. The shapes that occur are at most
    `len(bucket_sizes) * (batch_size // row_multiple + 1)`, so compilations stay bounded
    however many molecules are drawn.

    Args:
      num_atoms: `[S]` sizes of the molecules to sample.
      batch_size: rows of a full batch.
      bucket_sizes: increasing widths (the last holding the largest size), or None/().
      max_atoms: the padded width without buckets.
      row_multiple: the row granularity of a bucketed batch.
      call_cost_atoms: the fixed cost of a batch, in padded atoms.

    Returns:
      `(rows, width)` per batch: `rows` holds indices into `num_atoms`, repeated at its
      end to fill the batch's row count (the repeats are extra draws to discard).
    """
    n = np.asarray(num_atoms).astype(np.int64).ravel()
    if int(batch_size) < 1 or int(row_multiple) < 1:
        raise ValueError(
            f"batch_size and row_multiple must be positive; got {batch_size}, {row_multiple}."
        )
    if n.size and n.max() > max_atoms:
        raise ValueError(f"a size of {int(n.max())} exceeds max_atoms={max_atoms}.")
    sizes = _check_buckets(bucket_sizes or None, n, max_atoms)
    if sizes is None:
        idx = np.arange(n.size)
        return [
            (np.resize(idx[start : start + batch_size], batch_size), int(max_atoms))
            for start in range(0, n.size, batch_size)
        ]
    order = np.argsort(-n, kind="stable")
    cuts = _cheapest_cuts(
        n[order], np.asarray(sizes), int(batch_size), int(row_multiple), int(call_cost_atoms)
    )
    return [(np.resize(order[i:j], rows), int(width)) for i, j, rows, width in cuts]


def _cheapest_cuts(desc_sizes, widths, batch_size, row_multiple, call_cost):
    """`(start, stop, rows, width)` of the least-cost cut of sizes sorted largest first."""
    count = desc_sizes.size
    width_at = widths[np.searchsorted(widths, desc_sizes)]  # a batch starting here
    lengths = sorted({*range(row_multiple, batch_size + 1, row_multiple), batch_size})
    cost = np.full(count + 1, np.inf)
    cost[0], came_from = 0.0, np.zeros(count + 1, np.int64)

    def rows_of(i, j):
        return min(batch_size, -(-(j - i) // row_multiple) * row_multiple)

    for j in range(1, count + 1):
        starts = [j - k for k in lengths if k <= j]
        if j == count:  # the last batch may be partial
            starts = range(max(0, j - batch_size), j)
        for i in starts:
            c = cost[i] + rows_of(i, j) * width_at[i] + call_cost
            if c < cost[j]:
                cost[j], came_from[j] = c, i
    cuts, j = [], count
    while j > 0:
        i = int(came_from[j])
        cuts.append((i, j, rows_of(i, j), int(width_at[i])))
        j = i
    return cuts[::-1]


def num_batches(
    num_atoms: Any,
    batch_size: int,
    *,
    drop_remainder: bool = True,
    bucket_sizes: Sequence[int] | None = None,
) -> int:
    """How many batches one epoch of `batch_iterator` yields with these settings."""
    n = np.asarray(num_atoms)
    sizes = _check_buckets(bucket_sizes, n, None)
    return len(_batches_of_epoch(n, batch_size, None, drop_remainder, sizes))


def batch_iterator(
    data: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = True,
    bucket_sizes: Sequence[int] | None = None,
    num_epochs: int | None = 1,
    start_epoch: int = 0,
    center: bool = True,
    features: Callable[[np.ndarray, np.ndarray], np.ndarray] = featurise,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields padded numpy batches of molecules.

    Args:
      data: dict with `positions [M, N, 3]`, `charges [M, N]` (0 = padding, real atoms
        first) and `num_atoms [M]` (as `load_qm9` returns); other `[M]`-leading arrays
        (`index`, `smiles`, ...) are batched along.
      batch_size: molecules per batch.
      seed: order seed; epoch `e` is shuffled by `np.random.default_rng([seed, e])`.
      shuffle: if False, molecules come in dataset order (within each bucket).
      drop_remainder: drop the last incomplete batch (of each bucket).
      bucket_sizes: optional increasing sizes, e.g. `(12, 18, 23, 29)`: each molecule goes
        to the smallest bucket that holds it and a batch is padded to its bucket's size;
        batches of different buckets are interleaved in random order. None pads every batch
        to `N`.
      num_epochs: epochs to run (None: forever).
      start_epoch: index of the first epoch (for resuming).
      center: subtract each molecule's mean position over its real atoms (EDM removes the
        centre of mass before diffusion); padded rows stay zero.
      features: `(charges, mask) -> h`, the atom features of a batch (default: QM9's
        `featurise`; e.g. `geom_features` for GEOM-Drugs).

    Yields:
      dicts with `positions [B, n, 3]` float32, `charges [B, n]` int32, `mask [B, n]`
      float32, `h [B, n, F]` float32 scaled features (`features`), `num_atoms [B]`
      int32, the other per-molecule arrays, and `epoch` (int); `n` = `N` or the bucket size.

    Raises:
      ValueError: inconsistent arrays, a bad `batch_size` or bad bucket sizes.
    """
    positions = np.asarray(data["positions"])
    charges = np.asarray(data["charges"])
    n_atoms = np.asarray(data["num_atoms"])
    m, width = charges.shape
    if positions.shape != (m, width, 3) or n_atoms.shape != (m,):
        raise ValueError(
            f"data must hold positions [M, N, 3], charges [M, N], num_atoms [M]; got "
            f"{positions.shape}, {charges.shape}, {n_atoms.shape}."
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
    sizes = _check_buckets(bucket_sizes, n_atoms, width)
    extra = {
        k: np.asarray(v)
        for k, v in data.items()
        if k not in ("positions", "charges", "num_atoms") and np.shape(v)[:1] == (m,)
    }
    epoch = start_epoch
    while num_epochs is None or epoch < start_epoch + num_epochs:
        rng = np.random.default_rng([seed, epoch]) if shuffle else None
        for idx, bucket_width in _batches_of_epoch(n_atoms, batch_size, rng, drop_remainder, sizes):
            w = width if bucket_width is None else bucket_width
            x = positions[idx, :w].astype(np.float32)
            z = charges[idx, :w].astype(np.int32)
            mask = (np.arange(w) < n_atoms[idx, None]).astype(np.float32)
            if center:
                mean = (x * mask[..., None]).sum(1, dtype=np.float64) / np.maximum(
                    mask.sum(1, keepdims=True), 1
                )
                x = ((x - mean[:, None, :]) * mask[..., None]).astype(np.float32)
            batch = {
                "positions": x,
                "charges": z,
                "mask": mask,
                "h": np.asarray(features(z, mask), np.float32),
                "num_atoms": n_atoms[idx].astype(np.int32),
                **{k: v[idx] for k, v in extra.items()},
                "epoch": epoch,
            }
            yield batch
        epoch += 1
