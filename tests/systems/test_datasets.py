"""Splits: seeded, CoM-free, cached atomically with a format version."""

import numpy as np
import pytest

from symdiff_jax.systems import (
    FORMAT_VERSION,
    SamplingSettings,
    cached_splits,
    generate_splits,
    load_splits,
    save_splits,
)

SIZES = {"train": 12, "val": 4, "test": 4}
FAST = SamplingSettings(num_chains=8, burn_in=50, thin=5)


def test_splits_are_seeded_and_com_free():
    a = generate_splits(3, "dw4", SIZES, FAST)
    b = generate_splits(3, "dw4", SIZES, FAST)
    c = generate_splits(4, "dw4", SIZES, FAST)
    assert {k: v.shape for k, v in a.items()} == {k: (n, 4, 2) for k, n in SIZES.items()}
    for k in SIZES:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_allclose(a[k].mean(axis=1), 0.0, atol=1e-5)
        assert a[k].dtype == np.float32
    assert not np.array_equal(a["train"], c["train"])


def test_cache_round_trip_and_checks(tmp_path):
    path = str(tmp_path / "dw4.npz")
    first = cached_splits(path, "dw4", seed=1, sizes=SIZES, settings=FAST)
    again = cached_splits(path, "dw4", seed=1)  # read back, not regenerated
    for k in SIZES:
        np.testing.assert_array_equal(first[k], again[k])
    assert [p.name for p in tmp_path.iterdir()] == ["dw4.npz"]  # no temporary left
    with pytest.raises(ValueError, match="seed"):
        load_splits(path, system="dw4", seed=2)
    with pytest.raises(ValueError, match="system"):
        load_splits(path, system="lj13")


def test_format_version_checked(tmp_path, monkeypatch):
    path = str(tmp_path / "old.npz")
    import symdiff_jax.systems.datasets as datasets

    monkeypatch.setattr(datasets, "FORMAT_VERSION", FORMAT_VERSION + 1)
    save_splits(path, {"val": np.zeros((2, 4, 2), np.float32)}, system="dw4", seed=0)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="format version"):
        load_splits(path)
