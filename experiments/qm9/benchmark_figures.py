"""What `experiments.qm9.benchmark` times and reports: real or synthetic batches, one
batch per size bucket, the sampling plan of a batch, the bucketed figures and the table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from experiments.common.timing import roofline
from experiments.qm9.input_pipeline import DEVICE_KEYS, dataset_of, load_split
from symdiff_jax.data import batch_iterator, sampling_batches


def synthetic_batch(
    config,
    batch_size: int,
    num_atoms: int | None = None,
    seed: int = 0,
    min_atoms: int | None = None,
) -> dict[str, np.ndarray]:
    """A random batch shaped like the config's dataset (sizes in `[n/2, n]`, centred).

    The speed of a step does not depend on the values, only on the shapes; this stands
    in when the dataset is not available. `min_atoms` raises the smallest size.
    """
    dataset = dataset_of(config)
    n = int(num_atoms or config.data.max_atoms)
    rng = np.random.default_rng(seed)
    low = max(2, n // 2) if min_atoms is None else min(max(1, int(min_atoms)), n)
    sizes = rng.integers(low, n + 1, size=batch_size)
    mask = (np.arange(n)[None] < sizes[:, None]).astype(np.float32)
    charges = rng.choice(np.asarray(dataset.atom_types), size=(batch_size, n)) * (mask > 0)
    positions = rng.normal(0.0, 1.5, (batch_size, n, 3)) * mask[..., None]
    positions -= positions.sum(1, keepdims=True) / sizes[:, None, None] * mask[..., None]
    return {
        "positions": positions.astype(np.float32),
        "h": np.asarray(dataset.featurise(charges.astype(np.int32), mask), np.float32),
        "charges": charges.astype(np.int32),
        "mask": mask,
    }


def data_batch(
    config,
    batch_size: int,
    num_atoms: int | None = None,
    seed: int = 0,
    min_atoms: int | None = None,
) -> tuple[dict[str, np.ndarray], str, int | None]:
    """`(batch, source, num_train)`: `batch_size` random train molecules of <= `num_atoms` atoms.

    Padded to width `num_atoms` (default `config.data.max_atoms`) and centred, as the
    train loop feeds them; `source` is the dataset's name, or "synthetic" when loading
    fails (then `num_train` is None, else the size of the train split). With
    `min_atoms`, only molecules of at least that many atoms (one size bucket).
    """
    n = int(num_atoms or config.data.max_atoms)
    try:
        train = load_split(config, "train")
    except Exception as e:  # no dataset on this machine: shapes are what matters
        logging.warning("Dataset not available (%s); timing a synthetic batch.", e)
        return synthetic_batch(config, batch_size, n, seed, min_atoms), "synthetic", None
    sizes = train["num_atoms"]
    keep = np.flatnonzero((sizes <= n) & (sizes >= (min_atoms or 0)))
    if len(keep) < batch_size:
        raise ValueError(
            f"Only {len(keep)} training molecules have {min_atoms or 0}..{n} atoms; lower "
            "--batch_size or widen the size range (--num_atoms, bucket widths)."
        )
    pick = np.sort(np.random.default_rng(seed).choice(keep, batch_size, replace=False))
    subset = {
        "positions": train["positions"][pick, :n],
        "charges": train["charges"][pick, :n],
        "num_atoms": train["num_atoms"][pick],
    }
    dataset = dataset_of(config)
    batch = next(batch_iterator(subset, batch_size, shuffle=False, features=dataset.featurise))
    host = {k: np.asarray(batch[k]) for k in DEVICE_KEYS}
    return host, dataset.name, int(len(train["num_atoms"]))


def train_sizes(config) -> np.ndarray | None:
    """Atom counts of the training molecules, or None when the dataset is not available."""
    try:
        return np.asarray(load_split(config, "train")["num_atoms"])
    except Exception:  # no dataset on this machine
        return None


def bucket_fractions(sizes: np.ndarray, widths: Sequence[int]) -> list[float]:
    """Fraction of the molecules in each size bucket `(w_{b-1}, w_b]` (`w_{-1} = 0`).

    Args:
      sizes: `[M]` atom counts.
      widths: increasing bucket widths; the last must hold the largest molecule.

    Returns:
      One fraction per width, summing to 1.
    """
    widths = [int(w) for w in widths]
    if not widths or any(b <= a for a, b in zip(widths[:-1], widths[1:], strict=False)):
        raise ValueError(f"Bucket widths must be increasing and non-empty; got {widths}.")
    sizes = np.asarray(sizes)
    if sizes.size == 0 or sizes.max() > widths[-1]:
        raise ValueError(
            f"The largest bucket ({widths[-1]} atoms) must hold every molecule; the largest "
            f"has {int(sizes.max()) if sizes.size else 'none'}. Add a wider bucket."
        )
    edges = np.asarray([0, *widths])
    counts = [
        np.sum((sizes > lo) & (sizes <= hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    return [float(c) / sizes.size for c in counts]


def batch_max_atoms_mean(sizes: np.ndarray, batch_size: int) -> float:
    """Expected size of the largest of `batch_size` molecules drawn from `sizes`.

    A loader that trims each batch to its largest molecule (EDM's `collate_fn`, which the
    official SymDiff trains with) pads to this width on average. With `F` the empirical
    distribution function of `sizes` and draws with replacement,
    `E[max] = sum_{k >= 1} (1 - F(k - 1)^batch_size)`.

    Args:
      sizes: `[M]` positive atom counts.
      batch_size: molecules per batch, >= 1.
    """
    sizes = np.asarray(sizes)
    if sizes.size == 0 or sizes.min() < 1 or batch_size < 1:
        raise ValueError(
            f"Need positive sizes and batch_size >= 1; got {sizes.size} sizes "
            f"(smallest {sizes.min() if sizes.size else None}) and batch_size {batch_size}."
        )
    counts = np.bincount(sizes.astype(np.int64))
    cdf_below = np.concatenate([[0.0], np.cumsum(counts)[:-1] / sizes.size])  # F(k - 1)
    return float(np.sum(1.0 - cdf_below[1:] ** batch_size))


def bucket_batches(config, batch_size, widths, sizes, synthetic, seed) -> list[dict[str, Any]]:
    """One host batch per size bucket, with the bucket's share of the training molecules."""
    if not widths:
        return []
    widths = [int(w) for w in widths]
    fractions = bucket_fractions(sizes, widths)
    buckets, low = [], 1
    for w, f in zip(widths, fractions, strict=True):
        if synthetic:
            host = synthetic_batch(config, batch_size, w, seed, min_atoms=low)
        else:
            host = data_batch(config, batch_size, w, seed, min_atoms=low)[0]
        buckets.append({"width": w, "fraction": f, "host": host})
        low = w + 1
    return buckets


def training_sizes(config, synthetic: bool) -> np.ndarray:
    """The training split's molecule sizes (synthetic: each of 2..max_atoms once)."""
    sizes = None if synthetic else train_sizes(config)
    return np.arange(2, int(config.data.max_atoms) + 1) if sizes is None else sizes


def planned_sampling(
    config, batch_size, widths, training_sizes, seed, timed, call_ms, call_flops=None
):
    """The denoising step of `batch_size` molecules as `data.sampling_batches` plans it.

    The molecules' sizes are drawn from `training_sizes`; `timed` maps `(rows, width)`
    shapes already timed to ms per call (filled in here); `call_ms(mask)` times another
    shape; `call_flops(mask)`, if given, counts a batch's FLOPs per call
    (`sample_step_gflop_planned`, the plan's total).
    """
    sizes = np.random.default_rng(seed).choice(training_sizes, size=batch_size)
    plan = sampling_batches(
        sizes, batch_size, bucket_sizes=widths, max_atoms=int(config.data.max_atoms)
    )
    compile_s, step_ms, flops = 0.0, 0.0, []
    for rows, width in plan:
        shape = (len(rows), width)
        mask = (np.arange(width)[None] < sizes[rows, None]).astype(np.float32)
        if shape not in timed:
            timed[shape], seconds = call_ms(mask)
            compile_s += seconds
        step_ms += timed[shape]
        flops.append(None if call_flops is None else call_flops(mask))
    return {
        "sample_step_gflop_planned": None if None in flops else sum(flops) / 1e9,
        "sample_plan": [[len(rows), width] for rows, width in plan],
        "sample_plan_atoms": int(sizes.sum()),
        "sample_step_ms_planned": step_ms,
        "sample_run_s_planned": step_ms * (int(config.sample.num_steps) + 1) / 1e3,
        "plan_compile_s": compile_s,
    }


def bucket_figures(
    buckets, compile_s, num_train, batch_size, num_steps, peak_gflops
) -> dict[str, Any]:
    if not buckets:
        return {}
    weighted = lambda k: sum(b["fraction"] * b[k] for b in buckets)  # noqa: E731
    train_ms = weighted("train_ms")
    flops = None if any(b["train_flops"] is None for b in buckets) else weighted("train_flops")
    bucketed = roofline(flops, train_ms, peak_gflops)
    return {
        "bucket_widths": [b["width"] for b in buckets],
        "bucket_fractions": [b["fraction"] for b in buckets],
        "train_step_ms_by_width": [b["train_ms"] for b in buckets],
        "train_step_gflop_by_width": [
            None if b["train_flops"] is None else b["train_flops"] / 1e9 for b in buckets
        ],
        "sample_step_ms_by_width": [b["sample_ms"] for b in buckets],
        "train_step_ms_bucketed": train_ms,
        "train_step_utilisation_bucketed": bucketed["utilisation"],
        "train_step_floor_ms_bucketed": bucketed["floor_ms"],
        "sample_step_ms_bucketed": weighted("sample_ms"),
        "sample_run_s_bucketed": weighted("sample_ms") * (int(num_steps) + 1) / 1e3,
        "epoch_s_bucketed": None
        if num_train is None
        else train_ms / 1e3 * (num_train // batch_size),
        "bucket_compile_s": compile_s,
    }


_ROWS = (
    ("largest per batch", "batch_max_atoms_mean", "atoms"),
    ("train step", "train_step_ms", "ms"),
    ("train step (min)", "train_step_ms_min", "ms"),
    ("  work", "train_step_gflop", "GFLOP"),
    ("  of the matmul peak", "train_step_utilisation", ""),
    ("  at the matmul peak", "train_step_floor_ms", "ms"),
    ("train step compile", "compile_s", "s"),
    ("epoch estimate", "epoch_s", "s"),
    ("train step, bucketed", "train_step_ms_bucketed", "ms"),
    ("  of the matmul peak", "train_step_utilisation_bucketed", ""),
    ("  at the matmul peak", "train_step_floor_ms_bucketed", "ms"),
    ("epoch, bucketed", "epoch_s_bucketed", "s"),
    ("denoising step", "sample_step_ms", "ms"),
    ("  of the matmul peak", "sample_step_utilisation", ""),
    ("  at the matmul peak", "sample_step_floor_ms", "ms"),
    ("denoising, bucketed", "sample_step_ms_bucketed", "ms"),
    ("denoising, planned", "sample_step_ms_planned", "ms"),
    ("  at the matmul peak", "sample_step_floor_ms_planned", "ms"),
    ("full sampling run", "sample_run_s", "s"),
    ("  bucketed", "sample_run_s_bucketed", "s"),
    ("  planned", "sample_run_s_planned", "s"),
    ("  per molecule", "s_per_molecule", "s"),
    ("  compile", "sample_compile_s", "s"),
    ("exact O(3) target", "target_ms", "ms"),
    ("  / train step", "target_overhead", ""),
    ("peak RSS", "peak_rss_mb", "MiB"),
    ("peak device memory", "peak_device_mb", "MiB"),
    ("train step buffers", "train_buffers_mb", "MiB"),
    ("matmul peak", "matmul_peak_gflop_per_s", "GFLOP/s"),
)


def format_table(results: dict[str, Any]) -> str:
    """A two-column text table of the figures (missing ones shown as '-')."""
    head = (
        f"{results.get('variant', '')}: {results['params']:,} parameters, batch "
        f"{results['batch_size']} x {results['num_atoms']} atoms ({results['data']}), "
        f"{results['devices']} {results['platform']} device(s)"
        + (", FSDP" if results.get("fsdp") else "")
    )
    lines = [head, "-" * len(head)]
    for label, key, unit in _ROWS:
        value = results.get(key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            text = "-"
        elif key == "target_overhead" or "utilisation" in key:
            text = f"{100 * value:.2f} %"
        else:
            text = f"{value:,.4g} {unit}".rstrip()
        lines.append(f"{label:<22}{text:>16}")
    return "\n".join(lines)
