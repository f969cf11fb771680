"""Size histogram, size sampling and the numpy batch iterator."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from scipy import stats

from symdiff_jax.data import (
    batch_iterator,
    num_atoms_log_prob,
    num_batches,
    sample_num_atoms,
    sampling_batches,
    size_histogram,
)
from symdiff_jax.data.batching import CALL_COST_ATOMS


def toy_dataset(m=103, width=29, seed=0):
    rng = np.random.default_rng(seed)
    n = rng.integers(3, width + 1, size=m)
    mask = np.arange(width) < n[:, None]
    charges = np.where(mask, rng.choice([1, 6, 7, 8, 9], size=(m, width)), 0)
    positions = (
        rng.normal(size=(m, width, 3)).astype(np.float32) * mask[..., None] + 0.5 * mask[..., None]
    )
    return {
        "positions": positions.astype(np.float32),
        "charges": charges.astype(np.int32),
        "num_atoms": n.astype(np.int32),
        "index": np.arange(1, m + 1),
        "smiles": np.array([f"m{i}" for i in range(m)]),
    }


def test_size_histogram_counts():
    h = size_histogram(np.array([3, 3, 5, 29]))
    assert h.shape == (30,) and h.sum() == 4
    assert h[3] == 2 and h[5] == 1 and h[29] == 1
    with pytest.raises(ValueError, match=r"num_atoms must lie in \[0, 29\]"):
        size_histogram(np.array([30]))


@pytest.mark.allow_nonfinite
def test_sample_num_atoms_follows_histogram(key):
    """Chi-square goodness of fit; false-alarm rate 1e-3 under a correct sampler."""
    hist = np.zeros(30, int)
    hist[[3, 10, 18, 29]] = [1, 2, 5, 2]
    draws = np.asarray(sample_num_atoms(key, hist, (20_000,)))
    assert draws.dtype == np.int32
    assert set(np.unique(draws)) <= {3, 10, 18, 29}
    counts = np.array([(draws == n).sum() for n in (3, 10, 18, 29)])
    expected = np.array([1, 2, 5, 2]) / 10 * len(draws)
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_num_atoms_log_prob():
    hist = np.zeros(30, int)
    hist[[3, 4]] = [1, 3]
    with jax.enable_x64(True):
        lp = np.asarray(num_atoms_log_prob(hist, np.array([3, 4, 5])))
    np.testing.assert_allclose(lp[:2], np.log([0.25, 0.75]), rtol=1e-12)
    np.testing.assert_allclose(lp[2], np.log(1e-30), rtol=1e-12)


def test_epoch_covers_every_molecule_once():
    data = toy_dataset()
    seen = [b["index"] for b in batch_iterator(data, 10, drop_remainder=False)]
    assert sorted(np.concatenate(seen).tolist()) == list(range(1, 104))
    assert len(seen) == 11 == num_batches(data["num_atoms"], 10, drop_remainder=False)
    kept = list(batch_iterator(data, 10))
    assert len(kept) == 10 == num_batches(data["num_atoms"], 10)
    assert all(len(b["index"]) == 10 for b in kept)


def test_batch_contents_match_the_data():
    data = toy_dataset()
    batch = next(batch_iterator(data, 7, seed=3, center=False))
    rows = batch["index"] - 1
    np.testing.assert_array_equal(batch["positions"], data["positions"][rows])
    np.testing.assert_array_equal(batch["charges"], data["charges"][rows])
    np.testing.assert_array_equal(batch["mask"], (data["charges"][rows] > 0).astype(np.float32))
    assert batch["h"].shape == (7, 29, 6)
    assert list(batch["smiles"]) == [f"m{i}" for i in rows]


def test_center_removes_the_masked_mean():
    data = toy_dataset()
    batch = next(batch_iterator(data, 16))
    m = batch["mask"][..., None]
    com = (batch["positions"] * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(com, 0, atol=1e-5)
    assert np.all(batch["positions"][batch["mask"] == 0] == 0)
    rows = batch["index"] - 1
    raw = data["positions"][rows]
    diff = (raw - batch["positions"]) * m  # a pure translation per molecule
    spread = np.abs(diff - diff[:, :1]) * m
    assert spread.max() < 1e-5


def test_order_depends_only_on_seed_and_epoch():
    data = toy_dataset()

    def order(**kw):
        return np.concatenate([b["index"] for b in batch_iterator(data, 10, **kw)])

    np.testing.assert_array_equal(order(seed=1), order(seed=1))
    assert not np.array_equal(order(seed=1), order(seed=2))
    two = [b["index"] for b in batch_iterator(data, 10, seed=1, num_epochs=2)]
    resumed = [b["index"] for b in batch_iterator(data, 10, seed=1, start_epoch=1)]
    assert not np.array_equal(np.concatenate(two[:10]), np.concatenate(two[10:]))
    for a, b in zip(two[10:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    unshuffled = order(shuffle=False, drop_remainder=False)
    np.testing.assert_array_equal(unshuffled, np.arange(1, 104))


def test_buckets_pad_to_the_smallest_holding_size():
    data = toy_dataset(m=400)
    buckets = (10, 18, 29)
    batches = list(batch_iterator(data, 8, bucket_sizes=buckets, drop_remainder=False))
    assert sorted(np.concatenate([b["index"] for b in batches]).tolist()) == list(range(1, 401))
    widths = set()
    for b in batches:
        w = b["positions"].shape[1]
        widths.add(w)
        assert w in buckets and b["charges"].shape[1] == w and b["mask"].shape[1] == w
        smallest = buckets[int(np.searchsorted(buckets, b["num_atoms"].max()))]
        lower = ([0] + list(buckets))[buckets.index(w)]
        assert np.all(b["num_atoms"] <= w) and np.all(b["num_atoms"] > lower)
        assert smallest == w
        np.testing.assert_array_equal(b["mask"].sum(1), b["num_atoms"])
    assert widths == set(buckets)
    n = num_batches(data["num_atoms"], 8, bucket_sizes=buckets)
    assert n == len(list(batch_iterator(data, 8, bucket_sizes=buckets)))
    first = list(itertools.islice(batch_iterator(data, 8, bucket_sizes=buckets, seed=5), 4))
    again = list(itertools.islice(batch_iterator(data, 8, bucket_sizes=buckets, seed=5), 4))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["index"], b["index"])


def test_bad_arguments():
    data = toy_dataset()
    with pytest.raises(ValueError, match="largest bucket"):
        next(batch_iterator(data, 4, bucket_sizes=(10, 20)))
    with pytest.raises(ValueError, match="increasing"):
        next(batch_iterator(data, 4, bucket_sizes=(20, 10, 29)))
    with pytest.raises(ValueError, match="batch_size"):
        next(batch_iterator(data, 0))
    with pytest.raises(ValueError, match="positions"):
        next(batch_iterator({**data, "positions": data["positions"][:, :5]}, 4))


def test_sampling_batches_cover_each_molecule_once_in_bounded_shapes():
    sizes = np.random.default_rng(0).integers(3, 30, size=203)
    buckets = (12, 18, 29)
    plan = sampling_batches(sizes, 32, bucket_sizes=buckets, max_atoms=29, row_multiple=8)
    seen = np.concatenate([np.unique(rows) for rows, _ in plan])
    np.testing.assert_array_equal(np.sort(seen), np.arange(203))
    for rows, width in plan:
        assert width in buckets and len(rows) % 8 == 0 and len(rows) <= 32
        assert np.all(sizes[rows] <= width)
        assert len(np.unique(rows)) > len(rows) - 8  # fillers only complete the last 8 rows
    assert len({(len(r), w) for r, w in plan}) <= len(buckets) * (32 // 8 + 1)
    plain = sampling_batches(sizes, 32, max_atoms=29)
    assert {(len(r), w) for r, w in plain} == {(32, 29)}
    np.testing.assert_array_equal(np.concatenate([r for r, _ in plain])[:203], np.arange(203))
    with pytest.raises(ValueError, match="largest bucket"):
        sampling_batches(sizes, 32, bucket_sizes=(12, 18), max_atoms=29)
    with pytest.raises(ValueError, match="max_atoms"):
        sampling_batches(sizes, 32, max_atoms=20)


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _set_partitions(rest):
        yield [[first], *partition]
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1 :]]


@pytest.mark.parametrize("seed", range(8))
def test_sampling_batches_cost_is_the_brute_force_minimum(seed):
    """Against every way of grouping 8 molecules into batches (4,140 set partitions)."""
    sizes = np.random.default_rng(seed).integers(2, 13, size=8)
    buckets, batch, multiple, call = (5, 8, 12), 4, 2, 3

    def cost(groups):
        total = 0
        for g in groups:
            rows = min(batch, -(-len(g) // multiple) * multiple)
            width = next(w for w in buckets if w >= sizes[g].max())
            total += rows * width + call
        return total

    best = min(
        cost(p)
        for p in _set_partitions(list(range(8)))
        if all(len(g) <= batch for g in p)
        and sum(len(g) % multiple != 0 for g in p) <= 1  # as in the plan: one partial batch
    )
    plan = sampling_batches(
        sizes,
        batch,
        bucket_sizes=buckets,
        max_atoms=12,
        row_multiple=multiple,
        call_cost_atoms=call,
    )
    distinct = [np.unique(rows) for rows, _ in plan]
    np.testing.assert_array_equal(np.sort(np.concatenate(distinct)), np.arange(8))
    assert sum(len(rows) * w + call for rows, w in plan) == best
    assert cost(distinct) == best  # each batch at the narrowest bucket that holds it


def test_sampling_batches_fill_rows_from_smaller_buckets():
    """64 QM9-like sizes: well below the padded atoms of each molecule kept to its bucket."""
    rng = np.random.default_rng(1)
    buckets = (16, 19, 23, 29)
    planned = kept = 0
    for _ in range(20):
        weights = np.r_[np.ones(6), 4 * np.ones(7), np.ones(7)]
        sizes = rng.choice(np.arange(10, 30), size=64, p=weights / weights.sum())
        plan = sampling_batches(sizes, 64, bucket_sizes=buckets, max_atoms=29)
        planned += sum(len(rows) * w + CALL_COST_ATOMS for rows, w in plan)
        own = np.bincount(np.searchsorted(buckets, sizes), minlength=len(buckets))
        kept += sum(  # partial batches cut to 8 rows
            -(-c // 8) * 8 * w + CALL_COST_ATOMS * (c > 0)
            for c, w in zip(own, buckets, strict=True)
        )
    assert planned < 0.9 * kept, (planned, kept)
