"""GEOM's published files read back: pickles, split files, test SMILES and test Mols.

Security: the readers unpickle only the paths passed in; these files are written here.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from symdiff_jax.data.geom import load_cached
from symdiff_jax.data.geom_pickles import (
    load_geom_molecule,
    load_geom_split,
    load_split_indices,
    load_test_mols,
    load_test_smiles,
)
from symdiff_jax.testing.fake_data import etkdg_conformer, geom_molecule_dict, write_pickle


def test_load_geom_molecule_filters_and_renormalises(tmp_path):
    """Three ETKDG conformers of acetic acid plus a 'reacted' one (glycolaldehyde, same
    formula): the reacted conformer is dropped (by the SMILES check, or by the atom-order
    check when filtering is off), weights are renormalised over the kept ones, positions
    are those of the rd_mols, and max_conformers keeps the largest weights."""
    extra = etkdg_conformer("OCC=O", 5)
    entry = geom_molecule_dict("CC(=O)O", 3, seed=1, extra_mols=[extra])
    path = tmp_path / "CC(=O)O.pickle"
    write_pickle(entry, path)
    rec = load_geom_molecule(path)
    assert rec["smiles"] == "CC(=O)O" and rec["num_dropped"] == 1
    raw = np.array([c["boltzmannweight"] for c in entry["conformers"][:3]])
    np.testing.assert_allclose(rec["boltzmann_weights"], raw)
    np.testing.assert_allclose(rec["weights"], raw / raw.sum())
    np.testing.assert_allclose(rec["energies"], [-10.0, -11.0, -12.0])
    for k in range(3):
        ref = entry["conformers"][k]["rd_mol"].GetConformer().GetPositions()
        np.testing.assert_allclose(rec["positions"][k], ref)
        np.testing.assert_allclose(rec["mol"].GetConformer(k).GetPositions(), ref)
    z = [a.GetAtomicNum() for a in entry["conformers"][0]["rd_mol"].GetAtoms()]
    np.testing.assert_array_equal(rec["atomic_numbers"], z)
    unfiltered = load_geom_molecule(path, filter_reacted=False)
    assert unfiltered["positions"].shape[0] == 3 and unfiltered["num_dropped"] == 1
    top = load_geom_molecule(path, max_conformers=2)
    np.testing.assert_allclose(top["boltzmann_weights"], raw[[2, 1]])
    only_reacted = geom_molecule_dict("CC(=O)O", 0, extra_mols=[extra])
    write_pickle(only_reacted, tmp_path / "reacted.pickle")
    assert load_geom_molecule(tmp_path / "reacted.pickle") is None
    assert load_geom_molecule(tmp_path / "reacted.pickle", filter_reacted=False) is not None
    with pytest.raises(ValueError, match="not a GEOM"):
        write_pickle([1, 2], tmp_path / "bad.pickle")
        load_geom_molecule(tmp_path / "bad.pickle")


def test_split_indexes_sorted_files_and_counts_skips(release):
    """Split indices select from the pickles sorted by path (each split sorted first);
    molecules with fragments and unparsable SMILES are skipped and counted."""
    files = release["files"]
    out = load_geom_split(release["root"], "train")
    expected = [files[i] for i in sorted([4, 0, 2, 5, 3])]
    names = [p.rsplit("/", 1)[-1][: -len(".pickle")] for p in expected]
    kept = [s for s in names if s not in ("CC.O", "C1CC")]
    assert [r["smiles"] for r in out["molecules"]] == kept
    assert out["skipped"] == {"fragments": 1, "smiles_parse_failed": 1}
    assert [files[r["split_index"]] for r in out["molecules"]] == [
        r["source"] for r in out["molecules"]
    ]
    val = load_geom_split(release["root"], "valid")
    assert [r["source"] for r in val["molecules"]] == [files[1]]
    assert load_geom_split(release["root"], "test")["molecules"] == []
    first3 = load_geom_split(release["root"], "train", max_molecules=3)  # 2 are skipped
    assert len(first3["molecules"]) + sum(first3["skipped"].values()) == 3


def test_split_file_plain_integer_array(tmp_path):
    """A [3, K] integer split file (equal sizes) is read without unpickling."""
    np.save(tmp_path / "split.npy", np.array([[3, 1], [0, 2], [5, 4]]))
    out = load_split_indices(tmp_path / "split.npy")
    np.testing.assert_array_equal(out["train"], [1, 3])
    np.testing.assert_array_equal(out["test"], [4, 5])


def test_missing_files_name_what_where_and_source(tmp_path):
    """Missing split file / pickle folder / test files: FileNotFoundError naming the file,
    where it looked and where the data is published."""
    with pytest.raises(FileNotFoundError) as err:
        load_geom_split(tmp_path, "train")
    msg = str(err.value)
    assert "split.npy" in msg and str(tmp_path) in msg
    assert "dataverse" in msg and "torsional-diffusion" in msg and "ETFlow" in msg
    np.save(tmp_path / "split.npy", np.array([[0], [0], [0]]))
    with pytest.raises(FileNotFoundError, match="pickles"):
        load_geom_split(tmp_path, "train", dataset="qm9")
    with pytest.raises(FileNotFoundError, match="test_mols.pkl"):
        load_test_mols(tmp_path / "test_mols.pkl")
    with pytest.raises(FileNotFoundError, match="test_smiles.csv"):
        load_test_smiles(tmp_path / "test_smiles.csv")
    with pytest.raises(FileNotFoundError, match="convert_to_cache"):
        load_cached(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be"):
        load_geom_split(tmp_path, "training")


def test_test_smiles_and_test_mols(tmp_path):
    """test_smiles.csv rows (smiles, n_conformers, corrected_smiles) and test_mols.pkl
    (smiles -> list of one-conformer Mols) are read as written."""
    rows = [("CCO", 2, "CCO"), ("C[C@@H](O)CC", 3, "C[C@@H](O)CC")]
    with open(tmp_path / "test_smiles.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["smiles", "n_conformers", "corrected_smiles"])
        w.writerows(rows)
    table = load_test_smiles(tmp_path / "test_smiles.csv")
    assert table["smiles"].tolist() == ["CCO", "C[C@@H](O)CC"]
    assert table["num_conformers"].tolist() == [2, 3]
    mols = {s: [etkdg_conformer(s, 3 + k) for k in range(n)] for s, n, _ in rows}
    write_pickle(mols, tmp_path / "test_mols.pkl")
    loaded = load_test_mols(tmp_path / "test_mols.pkl")
    assert list(loaded) == ["CCO", "C[C@@H](O)CC"]
    for s in loaded:
        for a, b in zip(loaded[s], mols[s], strict=True):
            np.testing.assert_allclose(
                a.GetConformer().GetPositions(), b.GetConformer().GetPositions()
            )
    write_pickle({"CCO": ["not a mol"]}, tmp_path / "bad.pkl")
    with pytest.raises(ValueError, match="RDKit Mols"):
        load_test_mols(tmp_path / "bad.pkl")


class _Decoy:
    """Unpickling it creates the file `flag` (proof that the loader opened it)."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return (open, (self.flag, "w"))


def test_reads_only_the_named_release_and_lists_every_pickle_first(tmp_path, caplog):
    """With the release root given, only its split file and the split's pickles are
    unpickled, each named in the log before reading; decoys next to them (test_mols.pkl,
    another dataset's folder, a stray pickle) are never opened. Given the QM9/ sub-folder
    instead, nothing outside it is read: the error names the root to pass."""
    import logging

    from symdiff_jax.data.geom import convert_to_cache
    from symdiff_jax.testing.fake_data import write_example_geom

    root = tmp_path / "release"
    release = write_example_geom(root, ("CCO", "CC(=O)O", "OCC#N", "CC(C)C", "c1ccoc1"))
    flag = tmp_path / "decoy_was_unpickled"
    for decoy in (
        root / "QM9" / "test_mols.pkl",
        root / "rdkit_folder" / "drugs" / "CCO.pickle",
        root / "stray.pickle",
    ):
        decoy.parent.mkdir(parents=True, exist_ok=True)
        write_pickle(_Decoy(flag), decoy)
    with pytest.raises(FileNotFoundError, match=f"release root seems to be {root}"):
        convert_to_cache(root / "QM9", tmp_path / "c0", dataset="qm9")
    assert not flag.exists()
    with caplog.at_level(logging.INFO, logger="symdiff_jax.data.geom_pickles"):
        out = load_geom_split(root, "train", dataset="qm9")
        convert_to_cache(root, tmp_path / "c1", dataset="qm9")
    assert not flag.exists()
    expected = [release["files"][i] for i in release["split"]["train"]]
    assert out["pickles"] == expected
    listed = [r.getMessage() for r in caplog.records if "unpickling" in r.getMessage()]
    assert any(m.endswith(", ".join(expected)) for m in listed)
    assert all("stray" not in m and "drugs" not in m and "test_mols" not in m for m in listed)
