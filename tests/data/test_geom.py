"""The safe GEOM cache: a round trip through SDF + npz equals the pickles, without unpickling."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
from rdkit import Chem

from symdiff_jax.data.geom import convert_to_cache, load_cached
from symdiff_jax.data.geom_pickles import load_geom_split, split_conformers
from symdiff_jax.testing.fake_data import etkdg_conformer, write_pickle


def test_cache_round_trip_without_unpickling(release, tmp_path, monkeypatch):
    """convert_to_cache then load_cached returns the same molecules (graph incl. chirality,
    positions to the SDF's 1e-4 Angstrom, weights, energies, skip counts), and load_cached
    never unpickles: it still works with pickle.load / pickle.loads disabled."""
    data_dir = release["data_dir"]
    rows = [("C[C@@H](O)CC", 3, "C[C@@H](O)CC")]
    with open(data_dir / "test_smiles.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["smiles", "n_conformers", "corrected_smiles"])
        w.writerows(rows)
    write_pickle({"C[C@@H](O)CC": [etkdg_conformer("C[C@@H](O)CC", 40 + k) for k in range(3)]},
          data_dir / "test_mols.pkl")  # fmt: skip
    cache = convert_to_cache(
        release["root"],
        tmp_path / "cache",
        splits=("train", "val"),
        test_mols=data_dir / "test_mols.pkl",
        test_smiles=data_dir / "test_smiles.csv",
    )
    direct = load_geom_split(release["root"], "train")

    def refuse(*args, **kwargs):
        raise AssertionError("load_cached must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    cached = load_cached(cache, "train")
    assert cached["skipped"] == direct["skipped"]
    assert len(cached["molecules"]) == len(direct["molecules"])
    for a, b in zip(cached["molecules"], direct["molecules"], strict=True):
        assert a["smiles"] == b["smiles"]
        assert Chem.MolToSmiles(Chem.RemoveHs(a["mol"])) == Chem.MolToSmiles(
            Chem.RemoveHs(b["mol"])
        )
        assert [x.GetChiralTag() for x in a["mol"].GetAtoms()] == [
            x.GetChiralTag() for x in b["mol"].GetAtoms()
        ]
        np.testing.assert_allclose(a["positions"], b["positions"], atol=1e-4)
        np.testing.assert_allclose(a["weights"], b["weights"])
        np.testing.assert_allclose(a["energies"], b["energies"])
        np.testing.assert_array_equal(a["atomic_numbers"], b["atomic_numbers"])
        assert a["mol"].GetNumConformers() == a["positions"].shape[0]
    tm = load_cached(cache, "test_mols")["molecules"]
    assert [r["smiles"] for r in tm] == ["C[C@@H](O)CC"]
    assert tm[0]["num_conformers_csv"] == 3 and tm[0]["corrected_smiles"] == "C[C@@H](O)CC"
    assert len(split_conformers(tm[0]["mol"])) == 3
    with pytest.raises(FileNotFoundError, match="'test'"):
        load_cached(cache, "test")


def test_cache_version_and_consistency_checks(release, tmp_path):
    """A cache index of another format version, or one that disagrees with its SDF, is
    refused with a message saying to convert again."""
    cache = convert_to_cache(release["root"], tmp_path / "c", splits=("val",))
    with np.load(cache / "val.npz") as f:
        index = {k: f[k] for k in f.files}
    np.savez(cache / "val.npz", **{**index, "cache_format": np.array(99)})
    with pytest.raises(ValueError, match="convert_to_cache again"):
        load_cached(cache, "val")
    np.savez(cache / "val.npz", **{**index, "offsets": index["offsets"] * 2})
    with pytest.raises(ValueError, match="inconsistent"):
        load_cached(cache, "val")
