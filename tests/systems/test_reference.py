"""The reader of published splits: layout, centring, clear errors (files written here)."""

import numpy as np
import pytest

from symdiff_jax.systems import load_reference_split


def test_reads_flat_files_and_centres(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4, 2)).astype(np.float32) + 5.0
    np.save(tmp_path / "val_split_DW4.npy", x.reshape(6, 8))
    out = load_reference_split(str(tmp_path), "dw4", "val")
    assert out.shape == (6, 4, 2)
    np.testing.assert_allclose(out, x - x.mean(axis=1, keepdims=True), atol=1e-5)


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="test_split_LJ13-1000.npy"):
        load_reference_split(str(tmp_path), "lj13", "test")


def test_wrong_width(tmp_path):
    np.save(tmp_path / "val_split_LJ13-1000.npy", np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="39"):
        load_reference_split(str(tmp_path), "lj13", "val")
