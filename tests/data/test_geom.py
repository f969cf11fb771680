"""GEOM loaders on small files written here in the published formats.

The files mirror GEOM's `rdkit_folder` pickles, Torsional Diffusion's `split.npy`,
`test_smiles.csv` and `test_mols.pkl`; conformers are RDKit ETKDG embeddings with fixed seeds.
"""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from symdiff_jax.data import geom
from symdiff_jax.data.geom import (
    BOND_ORDERS,
    GEOM_QM9_ELEMENTS,
    HYBRIDISATIONS,
    convert_to_cache,
    graph_features,
    load_cached,
    load_geom_molecule,
    load_geom_split,
    load_split_indices,
    load_test_mols,
    load_test_smiles,
    split_conformers,
    write_example_geom,
)


def _embedded(smiles: str, seed: int):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    assert AllChem.EmbedMolecule(mol, params) == 0
    return mol


def _geom_dict(smiles: str, num_conformers: int = 3, seed: int = 0, extra_mols=()):
    """A GEOM rdkit_folder dict: conformers with rd_mol, boltzmannweight, totalenergy."""
    mols = [_embedded(smiles, seed + 17 * k) for k in range(num_conformers)] + list(extra_mols)
    weights = np.arange(1, len(mols) + 1, dtype=float)
    weights /= weights.sum()
    return {
        "smiles": smiles,
        "totalconfs": len(mols),
        "conformers": [
            {
                "rd_mol": m,
                "boltzmannweight": float(w),
                "totalenergy": -10.0 - k,
                "geom_id": k,
            }
            for k, (m, w) in enumerate(zip(mols, weights, strict=True))
        ],
    }


def _dump(obj, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


@pytest.fixture
def release(tmp_path):
    """Six molecules (one with fragments, one unparsable SMILES) in the published layout."""
    folder = tmp_path / "rdkit_folder" / "qm9"
    smiles = ["OCC#N", "CCO", "C[C@@H](O)CC", "CC(=O)O", "CC.O", "C1CC"]
    for k, s in enumerate(smiles):
        if s == "C1CC":  # RDKit cannot parse it (unclosed ring)
            entry = {"smiles": s, "conformers": [{"rd_mol": _embedded("CCC", k)}]}
        else:
            entry = _geom_dict(s, seed=k)
        _dump(entry, folder / f"{s}.pickle")
    files = sorted(str(p) for p in folder.glob("*.pickle"))
    data_dir = tmp_path / "QM9"
    data_dir.mkdir()
    split = np.empty(3, dtype=object)
    split[0] = np.array([4, 0, 2, 5, 3])  # unsorted on purpose
    split[1] = np.array([1])
    split[2] = np.array([], np.int64)
    np.save(data_dir / "split.npy", split, allow_pickle=True)
    return {"data_dir": data_dir, "files": files, "folder": folder}


def test_load_geom_molecule_filters_and_renormalises(tmp_path):
    """Three ETKDG conformers of acetic acid plus a 'reacted' one (glycolaldehyde, same
    formula): the reacted conformer is dropped (by the SMILES check, or by the atom-order
    check when filtering is off), weights are renormalised over the kept ones, positions
    are those of the rd_mols, and max_conformers keeps the largest weights."""
    extra = _embedded("OCC=O", 5)
    entry = _geom_dict("CC(=O)O", 3, seed=1, extra_mols=[extra])
    path = tmp_path / "CC(=O)O.pickle"
    _dump(entry, path)
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
    only_reacted = _geom_dict("CC(=O)O", 0, extra_mols=[extra])
    _dump(only_reacted, tmp_path / "reacted.pickle")
    assert load_geom_molecule(tmp_path / "reacted.pickle") is None
    assert load_geom_molecule(tmp_path / "reacted.pickle", filter_reacted=False) is not None
    with pytest.raises(ValueError, match="not a GEOM"):
        _dump([1, 2], tmp_path / "bad.pickle")
        load_geom_molecule(tmp_path / "bad.pickle")


def test_split_indexes_sorted_files_and_counts_skips(release):
    """Split indices select from the pickles sorted by path (each split sorted first);
    molecules with fragments and unparsable SMILES are skipped and counted."""
    files = release["files"]
    out = load_geom_split(release["data_dir"], "train")
    expected = [files[i] for i in sorted([4, 0, 2, 5, 3])]
    names = [p.rsplit("/", 1)[-1][: -len(".pickle")] for p in expected]
    kept = [s for s in names if s not in ("CC.O", "C1CC")]
    assert [r["smiles"] for r in out["molecules"]] == kept
    assert out["skipped"] == {"fragments": 1, "smiles_parse_failed": 1}
    assert [files[r["split_index"]] for r in out["molecules"]] == [
        r["source"] for r in out["molecules"]
    ]
    val = load_geom_split(release["data_dir"], "valid")
    assert [r["source"] for r in val["molecules"]] == [files[1]]
    assert load_geom_split(release["data_dir"], "test")["molecules"] == []
    first3 = load_geom_split(release["data_dir"], "train", max_molecules=3)  # 2 are skipped
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
    mols = {s: [_embedded(s, 3 + k) for k in range(n)] for s, n, _ in rows}
    _dump(mols, tmp_path / "test_mols.pkl")
    loaded = load_test_mols(tmp_path / "test_mols.pkl")
    assert list(loaded) == ["CCO", "C[C@@H](O)CC"]
    for s in loaded:
        for a, b in zip(loaded[s], mols[s], strict=True):
            np.testing.assert_allclose(
                a.GetConformer().GetPositions(), b.GetConformer().GetPositions()
            )
    _dump({"CCO": ["not a mol"]}, tmp_path / "bad.pkl")
    with pytest.raises(ValueError, match="RDKit Mols"):
        load_test_mols(tmp_path / "bad.pkl")


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
    _dump({"C[C@@H](O)CC": [_embedded("C[C@@H](O)CC", 40 + k) for k in range(3)]},
          data_dir / "test_mols.pkl")  # fmt: skip
    cache = convert_to_cache(data_dir, tmp_path / "cache", splits=("train", "val"))
    direct = load_geom_split(data_dir, "train")

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
    cache = convert_to_cache(release["data_dir"], tmp_path / "c", splits=("val",))
    with np.load(cache / "val.npz") as f:
        index = {k: f[k] for k in f.files}
    np.savez(cache / "val.npz", **{**index, "cache_format": np.array(99)})
    with pytest.raises(ValueError, match="convert_to_cache again"):
        load_cached(cache, "val")
    np.savez(cache / "val.npz", **{**index, "offsets": index["offsets"] * 2})
    with pytest.raises(ValueError, match="inconsistent"):
        load_cached(cache, "val")


def test_graph_features_against_rdkit():
    """Features of phenylalanine (zwitterion, one stereocentre) with hydrogens, padded:
    bond orders equal RDKit's own adjacency with bond orders (aromatic 1.5), one-hot and
    atomic numbers agree with the atoms, charges +1/-1, aromatic sp2 ring carbons, the
    stereocentre tagged, padding zero; unknown elements and too-small sizes raise."""
    mol = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1C[C@@H]([NH3+])C(=O)[O-]"))
    n, nb = mol.GetNumAtoms(), mol.GetNumBonds()
    f = graph_features(mol, max_atoms=n + 4, max_bonds=nb + 3)
    ref = Chem.GetAdjacencyMatrix(mol, useBO=True)
    np.testing.assert_allclose(f["bond_orders"][:n, :n], ref)
    np.testing.assert_array_equal(f["bond_orders"][n:], 0)
    np.testing.assert_allclose(BOND_ORDERS[f["bond_types"]], f["bond_orders"])
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    np.testing.assert_array_equal(f["atomic_numbers"][:n], z)
    np.testing.assert_array_equal(f["atomic_numbers"][n:], 0)
    symbols = np.array(GEOM_QM9_ELEMENTS)[f["one_hot"][:n].argmax(-1)]
    assert symbols.tolist() == [a.GetSymbol() for a in mol.GetAtoms()]
    assert f["one_hot"][n:].sum() == 0 and (f["atom_types"][n:] == -1).all()
    charged = {a.GetIdx(): a.GetFormalCharge() for a in mol.GetAtoms() if a.GetFormalCharge()}
    assert {i: int(c) for i, c in enumerate(f["formal_charges"]) if c} == charged
    assert f["aromatic"].sum() == 6
    sp2 = HYBRIDISATIONS.index("SP2") + 1
    assert (f["hybridisation"][f["aromatic"] > 0] == sp2).all()
    ca = mol.GetSubstructMatch(Chem.MolFromSmarts("[CX4;H1]([NX4+])"))[0]
    assert f["chiral_tags"][ca] != 0 and np.count_nonzero(f["chiral_tags"]) == 1
    assert f["num_hs"][mol.GetSubstructMatch(Chem.MolFromSmarts("[NX4+]"))[0]] == 3
    pairs = {tuple(p) for p, m in zip(f["bond_index"], f["bond_mask"], strict=True) if m}
    assert pairs == {tuple(p) for p in np.argwhere(np.triu(ref) > 0)}
    assert f["bond_mask"].sum() == nb and f["bond_mask"][nb:].sum() == 0
    np.testing.assert_array_equal(f["mask"], (np.arange(n + 4) < n).astype(np.float32))
    assert f["edge_mask"][n:].sum() == 0 and f["edge_mask"].trace() == 0
    with pytest.raises(ValueError, match="Cl"):
        graph_features(Chem.MolFromSmiles("CCl"))
    assert graph_features(Chem.MolFromSmiles("CCl"), elements=geom.GEOM_DRUGS_ELEMENTS)
    with pytest.raises(ValueError, match="max_atoms"):
        graph_features(mol, max_atoms=n - 1)


def test_example_release_loads(tmp_path):
    """write_example_geom writes a release the loaders read: the three splits partition
    the molecules, and test_mols.pkl / test_smiles.csv hold the test split."""
    info = write_example_geom(tmp_path, num_conformers=2)
    seen = []
    for split in ("train", "val", "test"):
        out = load_geom_split(info["data_dir"], split)
        assert out["skipped"] == {}
        seen += [r["smiles"] for r in out["molecules"]]
        assert all(r["positions"].shape[0] == 2 for r in out["molecules"])
    assert sorted(seen) == sorted(info["smiles"])
    test = [info["smiles"][i] for i in info["split"]["test"]]
    assert list(load_test_mols(info["data_dir"] / "test_mols.pkl")) == test
    assert load_test_smiles(info["data_dir"] / "test_smiles.csv")["smiles"].tolist() == test
