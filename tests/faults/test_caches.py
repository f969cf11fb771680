"""Damaged cache files: each is rebuilt with a one-line warning naming its path, or (GEOM,
which needs the published pickles to rebuild) refused with a message naming its path."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from symdiff_jax.data import qm9
from symdiff_jax.data.atomic import read_cache_npz, write_npz_atomic
from symdiff_jax.data.qm9 import load_qm9


def _xyz(index: int, n_heavy: int) -> str:
    """A GDB-9 xyz file of a C_n H_(2n+2) chain (geometry irrelevant here)."""
    symbols = ["C"] * n_heavy + ["H"] * (2 * n_heavy + 2)
    props = "\t".join(["1.0"] * 15)
    lines = [str(len(symbols)), f"gdb {index}\t{props}\t"]
    lines += [f"{s}\t{1.5 * i}\t{0.1 * i}\t0.0\t0.0" for i, s in enumerate(symbols)]
    lines += ["1000.0", f"{'C' * n_heavy}\t{'C' * n_heavy}", "InChI=1S/x\tInChI=1S/x"]
    return "\n".join(lines) + "\n"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_charges(path):
    arrays = read_cache_npz(path, qm9._CACHE_FORMAT)
    np.savez(path, **{k: v for k, v in arrays.items() if k != "charges"}, cache_format=1)


def _old_format(path):
    arrays = read_cache_npz(path, qm9._CACHE_FORMAT)
    np.savez(path, **arrays, cache_format=0)


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(2000))


def _empty(path):
    path.write_bytes(b"")


def _short_array(path):
    arrays = read_cache_npz(path, qm9._CACHE_FORMAT)
    np.savez(path, **{**arrays, "index": arrays["index"][:-1]}, cache_format=1)


DAMAGES = {
    "truncated": _truncate,
    "missing_key": _drop_charges,
    "old_format": _old_format,
    "random_bytes": _random_bytes,
    "empty": _empty,
    "arrays_of_different_lengths": _short_array,
}


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "xyz"
    folder.mkdir()
    for index, n in ((1, 1), (2, 2), (4, 3), (5, 2)):
        (folder / f"dsgdb9nsd_{index:06d}.xyz").write_text(_xyz(index, n))
    return folder


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_qm9_cache_is_rebuilt_with_a_warning_naming_it(source, tmp_path, damage):
    cache = tmp_path / "cache"
    first = load_qm9("all", source=source, cache_dir=cache)
    (cache_file,) = cache.glob("*.npz")
    DAMAGES[damage](cache_file)
    with pytest.warns(UserWarning, match=f"Rebuilding the cache {cache_file}") as record:
        again = load_qm9("all", source=source, cache_dir=cache)
    ours = [r for r in record if issubclass(r.category, UserWarning)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)
    assert not [r for r in record if issubclass(r.category, ResourceWarning)]
    assert first.keys() == again.keys()
    for k in first:
        np.testing.assert_array_equal(first[k], again[k], err_msg=k)
    # The rebuilt file is whole again: a third call reads it silently.
    assert read_cache_npz(cache_file, qm9._CACHE_FORMAT, qm9._CACHE_KEYS) is not None


def test_read_cache_npz_names_the_file_and_the_reason(tmp_path):
    path = tmp_path / "c.npz"
    write_npz_atomic(path, {"a": np.arange(3), "cache_format": np.array(7)})
    assert set(read_cache_npz(path, 7, ("a",))) == {"a"}
    assert read_cache_npz(tmp_path / "absent.npz", 7) is None
    with pytest.warns(UserWarning, match="format version 7, expected 8"):
        assert read_cache_npz(path, 8) is None
    with pytest.warns(UserWarning, match=r"lacks the arrays \['b'\]"):
        assert read_cache_npz(path, 7, ("a", "b")) is None
    _truncate(path)
    with pytest.warns(UserWarning, match=f"{path}: it cannot be read"):
        assert read_cache_npz(path, 7) is None


@pytest.mark.parametrize("damage", ["truncated", "missing_key"])
def test_damaged_geom_cache_index_is_refused_naming_its_path(tmp_path, damage):
    """load_cached cannot rebuild (it needs the release): it names the file and the fix."""
    pytest.importorskip("rdkit")
    from symdiff_jax.data.geom import convert_to_cache, load_cached
    from symdiff_jax.testing.fake_data import write_example_geom

    release = write_example_geom(tmp_path / "release", ("CCO", "CC(=O)O", "OCC#N"))
    cache = convert_to_cache(tmp_path / "release", tmp_path / "cache", splits=("train",))
    npz = cache / "train.npz"
    if damage == "truncated":
        _truncate(npz)
    else:
        with np.load(npz) as f:
            arrays = {k: f[k] for k in f.files if k != "offsets"}
        np.savez(npz, **arrays)
    assert release["files"]
    with pytest.raises(ValueError, match=f"{npz}.*convert_to_cache again"):
        load_cached(cache, "train")


def test_truncated_zip_is_what_numpy_raises_badzipfile_on(tmp_path):
    """The damage the loaders must survive: numpy itself raises BadZipFile (no path)."""
    path = tmp_path / "x.npz"
    np.savez(path, a=np.arange(100))
    _truncate(path)
    with pytest.raises(zipfile.BadZipFile):
        np.load(path)


@pytest.mark.parametrize("damage", ["truncated", "missing_key"])
def test_damaged_conformer_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch, damage):
    pytest.importorskip("rdkit")
    from symdiff_jax.conformers import qm9_conformers

    try:
        data = load_qm9("test")
    except (FileNotFoundError, ImportError) as err:  # no local QM9 copy
        pytest.skip(str(err))
    small = {k: v[:5] for k, v in data.items()}
    monkeypatch.setattr(qm9_conformers, "load_qm9", lambda *a, **k: small)
    first = qm9_conformers.load_qm9_conformers("test", cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.npz")
    if damage == "truncated":
        _truncate(cache_file)
    else:
        arrays = read_cache_npz(cache_file, qm9_conformers.CACHE_FORMAT)
        del arrays["bond_types"]
        np.savez(cache_file, **arrays, cache_format=qm9_conformers.CACHE_FORMAT)
    with pytest.warns(UserWarning, match=f"Rebuilding the cache {cache_file}"):
        again = qm9_conformers.load_qm9_conformers("test", cache_dir=tmp_path)
    for k, v in first.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, again[k], err_msg=k)
