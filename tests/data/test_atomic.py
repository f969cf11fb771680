"""Atomic writes: the file appears whole or not at all, and a failed write leaves no trace."""

import os

import numpy as np
import pytest

from symdiff_jax.data.atomic import atomic_write, read_npz, write_npz_atomic


def test_npz_round_trip_and_plain_permissions(tmp_path):
    arrays = {"a": np.arange(6).reshape(2, 3), "s": np.array(["x", "yz"])}
    path = write_npz_atomic(tmp_path / "sub" / "f.npz", arrays)
    back = read_npz(path)
    assert set(back) == {"a", "s"}
    np.testing.assert_array_equal(back["a"], arrays["a"])
    np.testing.assert_array_equal(back["s"], arrays["s"])
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path / "sub") == ["f.npz"]


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write(path, lambda tmp: open(tmp, "w").write("old"))

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write("new, half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_read_npz_refuses_pickled_objects(tmp_path):
    np.savez(tmp_path / "obj.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        read_npz(tmp_path / "obj.npz")
