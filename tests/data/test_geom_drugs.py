"""GEOM-Drugs loader on small files in EDM's processed format, written by the tests."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.data import geom_drugs
from symdiff_jax.data.geom_drugs import (
    GEOM_ATOM_SYMBOLS,
    GEOM_ATOM_TYPES,
    atomic_numbers_from_geom_features,
    conformer_boundaries,
    edm_geom_split,
    geom_features,
    load_geom_drugs,
)
from symdiff_jax.testing.fake_data import write_fake_geom_drugs

# EDM's configs/datasets_config.py, geom_with_h: atom_encoder / atomic_nb / max_n_nodes.
EDM_ATOMIC_NB = [1, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 33, 35, 53, 80, 83]
EDM_DECODER = [
    "H",
    "B",
    "C",
    "N",
    "O",
    "F",
    "Al",
    "Si",
    "P",
    "S",
    "Cl",
    "As",
    "Br",
    "I",
    "Hg",
    "Bi",
]


def make_geom_dir(tmp_path, **kwargs):
    return write_fake_geom_drugs(tmp_path, **kwargs)


def edm_reference_split(table, perm, val_proportion=0.1, test_proportion=0.1):
    """EDM's `load_split_data`, written out with Python lists (independent reference)."""
    mol_id = table[:, 0].astype(int)
    split_indices = np.nonzero(mol_id[:-1] - mol_id[1:])[0] + 1
    data_list = np.split(table[:, 1:], split_indices)
    positions = list(range(len(data_list)))
    data_list = [data_list[i] for i in perm]
    positions = [positions[i] for i in perm]
    num_mol = len(data_list)
    val_index = int(num_mol * val_proportion)
    test_index = val_index + int(num_mol * test_proportion)
    return {
        "valid": (data_list[:val_index], positions[:val_index]),
        "test": (data_list[val_index:test_index], positions[val_index:test_index]),
        "train": (data_list[test_index:], positions[test_index:]),
    }


@pytest.fixture
def geom_dir(tmp_path):
    truth = make_geom_dir(tmp_path, num_molecules=12, conformations=3)
    return tmp_path, truth


# ------------------------------------------------------------------------------------------
# Constants are EDM's


def test_atom_types_match_edm_config():
    assert list(GEOM_ATOM_TYPES) == EDM_ATOMIC_NB
    assert list(GEOM_ATOM_SYMBOLS) == EDM_DECODER
    assert geom_drugs.GEOM_MAX_ATOMS == 181
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    assert [table.GetAtomicNumber(s) for s in GEOM_ATOM_SYMBOLS] == list(GEOM_ATOM_TYPES)


# ------------------------------------------------------------------------------------------
# Parsing


def test_conformer_boundaries_cut_where_the_id_changes():
    ids = np.array([0, 0, 0, 1, 1, 2, 5, 5, 5, 5], float)
    starts, sizes = conformer_boundaries(ids)
    np.testing.assert_array_equal(starts, [0, 3, 5, 6])
    np.testing.assert_array_equal(sizes, [3, 2, 1, 4])


def test_conformer_boundaries_across_read_chunks(monkeypatch):
    """Row chunks of 4: boundaries on and next to chunk edges are found exactly once."""
    monkeypatch.setattr(geom_drugs, "_CHUNK_ROWS", 4)
    ids = np.repeat(np.arange(7), [3, 1, 4, 2, 5, 1, 2]).astype(float)
    starts, sizes = conformer_boundaries(ids)
    np.testing.assert_array_equal(sizes, [3, 1, 4, 2, 5, 1, 2])
    np.testing.assert_array_equal(starts, np.cumsum([0, 3, 1, 4, 2, 5, 1]))
    empty = conformer_boundaries(np.zeros(0))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_all_split_parses_every_conformer(tmp_path):
    path, truth = tmp_path, make_geom_dir(tmp_path, num_molecules=12, id_offset=100)
    data = load_geom_drugs("all", path, max_conformers=3)
    confs = truth["conformers"]
    assert data["positions"].shape == (len(confs), 181, 3)
    assert data["positions"].dtype == np.float32 and data["charges"].dtype == np.int32
    for k, c in enumerate(confs):
        n = len(c["z"])
        assert data["num_atoms"][k] == n
        assert data["molecule_id"][k] == c["id"] and data["index"][k] == k
        np.testing.assert_array_equal(data["charges"][k, :n], c["z"])
        np.testing.assert_allclose(data["positions"][k, :n], c["xyz"], rtol=0, atol=1e-5)
        # padding: zero atomic numbers and zero coordinates after the real atoms
        assert not data["charges"][k, n:].any() and not data["positions"][k, n:].any()
    np.testing.assert_array_equal(data["dataset_smiles"], truth["smiles"])


def test_gathering_in_small_chunks_matches(geom_dir, monkeypatch):
    path, _ = geom_dir
    whole = load_geom_drugs("train", path, max_conformers=3)
    monkeypatch.setattr(geom_drugs, "_CHUNK_CONFORMERS", 2)
    monkeypatch.setattr(geom_drugs, "_CHUNK_ROWS", 5)
    chunked = load_geom_drugs("train", path, max_conformers=3)
    for k in whole:
        np.testing.assert_array_equal(whole[k], chunked[k])


def test_max_atoms_sets_the_padding_width(geom_dir):
    path, truth = geom_dir
    largest = max(len(c["z"]) for c in truth["conformers"])
    data = load_geom_drugs("all", path, max_conformers=3, max_atoms=largest)
    assert data["charges"].shape[1] == largest
    mask = np.arange(largest) < data["num_atoms"][:, None]
    np.testing.assert_array_equal(data["charges"] > 0, mask)


def test_smiles_are_optional(geom_dir):
    path, _ = geom_dir
    (path / "geom_drugs_smiles.txt").unlink()
    (path / "geom_drugs_n_3.npy").unlink()
    data = load_geom_drugs("test", path, max_conformers=3)
    assert "dataset_smiles" not in data and data["num_atoms"].shape[0] > 0


# ------------------------------------------------------------------------------------------
# Split


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_split_is_edms(geom_dir, split):
    """Same conformers, same order, same coordinates as EDM's load_split_data."""
    path, truth = geom_dir
    data = load_geom_drugs(split, path, max_conformers=3)
    ref_list, ref_pos = edm_reference_split(truth["table"], truth["perm"])[split]
    assert data["index"].tolist() == ref_pos
    assert data["molecule_id"].tolist() == ref_pos  # this build's ids count from 0
    assert len(ref_list) == len(data["num_atoms"])
    for k, conf in enumerate(ref_list):
        n = conf.shape[0]
        assert data["num_atoms"][k] == n
        np.testing.assert_array_equal(data["charges"][k, :n], conf[:, 0].astype(int))
        np.testing.assert_allclose(data["positions"][k, :n], conf[:, 1:], atol=1e-5)


def test_split_sizes_use_edm_fractions(tmp_path):
    truth = make_geom_dir(tmp_path, num_molecules=20, conformations=3)
    m = len(truth["conformers"])
    sizes = {s: len(load_geom_drugs(s, tmp_path, max_conformers=3)["index"]) for s in
             ("train", "valid", "test")}  # fmt: skip
    assert sizes["valid"] == int(0.1 * m) == sizes["test"] and sizes["valid"] >= 2
    assert sizes["train"] == m - 2 * int(0.1 * m)


def test_split_partition_is_disjoint_covering_and_deterministic(geom_dir):
    path, truth = geom_dir
    m = len(truth["conformers"])
    parts = [load_geom_drugs(s, path, max_conformers=3)["index"] for s in ("train", "val", "test")]
    joined = np.concatenate(parts)
    assert len(joined) == m and len(np.unique(joined)) == m
    again = load_geom_drugs("train", path, max_conformers=3)
    np.testing.assert_array_equal(again["index"], parts[0])
    np.testing.assert_array_equal(
        again["positions"], load_geom_drugs("train", path, max_conformers=3)["positions"]
    )


def test_seeded_permutation(geom_dir):
    path, truth = geom_dir
    (path / "geom_permutation.npy").unlink()
    m = len(truth["conformers"])
    a = {s: load_geom_drugs(s, path, max_conformers=3, permutation_seed=7)["index"]
         for s in ("train", "valid", "test")}  # fmt: skip
    perm = np.random.RandomState(7).permutation(m)
    n = int(0.1 * m)
    np.testing.assert_array_equal(a["valid"], perm[:n])
    np.testing.assert_array_equal(a["test"], perm[n : 2 * n])
    np.testing.assert_array_equal(a["train"], perm[2 * n :])
    other = load_geom_drugs("train", path, max_conformers=3, permutation_seed=8)["index"]
    assert not np.array_equal(other, a["train"])


def test_edm_geom_split_on_a_known_permutation():
    perm = np.array([9, 3, 0, 7, 1, 2, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20])
    s = edm_geom_split(perm)  # M = 21: int(2.1) = 2 valid, 2 test, 17 train
    assert s["valid"].tolist() == [9, 3] and s["test"].tolist() == [0, 7]
    assert s["train"].tolist() == perm[4:].tolist()


# ------------------------------------------------------------------------------------------
# Errors


def test_missing_files_say_which_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_geom_drugs("train", tmp_path)
    msg = str(err.value)
    for part in ("geom_drugs_30.npy", "geom_permutation.npy", str(tmp_path),
                 "build_geom_dataset.py", "dataverse.harvard.edu", "permutation_seed"):  # fmt: skip
        assert part in msg, part


def test_missing_permutation_only(geom_dir):
    path, _ = geom_dir
    (path / "geom_permutation.npy").unlink()
    with pytest.raises(FileNotFoundError, match="geom_permutation.npy") as err:
        load_geom_drugs("valid", path, max_conformers=3)
    assert "geom_drugs_3.npy" not in str(err.value).split("(looked for")[0]
    assert load_geom_drugs("all", path, max_conformers=3)["index"].size > 0


def test_unknown_element_names_it_and_its_index(geom_dir):
    path, truth = geom_dir
    table = truth["table"].copy()
    row = int(np.flatnonzero(table[:, 0] == 5)[2])
    table[row, 1] = 3  # lithium
    np.save(path / "geom_drugs_3.npy", table)
    with pytest.raises(ValueError, match=r"conformer 5 .*Li \(atomic number 3\) at atom 2"):
        load_geom_drugs("all", path, max_conformers=3)


def test_conformer_over_max_atoms_names_it(geom_dir):
    path, truth = geom_dir
    sizes = np.array([len(c["z"]) for c in truth["conformers"]])
    k = int(np.argmax(sizes))
    with pytest.raises(
        ValueError,
        match=rf"conformer {k} .*has {sizes[k]} atoms, more than max_atoms={sizes[k] - 1}",
    ):
        load_geom_drugs("all", path, max_conformers=3, max_atoms=int(sizes[k]) - 1)


def test_inconsistent_atom_count_file(geom_dir):
    path, truth = geom_dir
    counts = np.array([len(c["z"]) for c in truth["conformers"]])
    counts[4] += 1
    np.save(path / "geom_drugs_n_3.npy", counts)
    with pytest.raises(ValueError, match="conformer 4 has"):
        load_geom_drugs("all", path, max_conformers=3)
    np.save(path / "geom_drugs_n_3.npy", counts[:-1])
    with pytest.raises(ValueError, match="sizes for"):
        load_geom_drugs("all", path, max_conformers=3)


def test_bad_permutation_and_bad_table(geom_dir):
    path, truth = geom_dir
    m = len(truth["conformers"])
    np.save(path / "geom_permutation.npy", np.arange(m + 1))
    with pytest.raises(ValueError, match="another build"):
        load_geom_drugs("train", path, max_conformers=3)
    np.save(path / "geom_permutation.npy", np.zeros(m, int))
    with pytest.raises(ValueError, match="not a permutation"):
        load_geom_drugs("train", path, max_conformers=3)
    np.save(path / "geom_drugs_3.npy", truth["table"][:, :4])
    with pytest.raises(ValueError, match=r"shape \[R, 5\]"):
        load_geom_drugs("all", path, max_conformers=3)
    with pytest.raises(ValueError, match="split must be"):
        load_geom_drugs("training", path, max_conformers=3)


# ------------------------------------------------------------------------------------------
# Features


def test_geom_features_one_hot_and_scaling():
    z = np.array([[1, 83, 35, 6, 0], [17, 9, 0, 0, 0]])
    raw = geom_features(z, scaled=False, include_atomic_number=True)
    assert raw.shape == (2, 5, 17)
    for b in range(2):
        for i in range(5):
            expect = np.zeros(17, np.float32)
            if z[b, i]:
                expect[EDM_ATOMIC_NB.index(z[b, i])] = 1.0
                expect[16] = z[b, i]
            np.testing.assert_array_equal(raw[b, i], expect)
    scaled = geom_features(z)  # EDM's GEOM setting: one-hot / 4 only
    assert scaled.shape == (2, 5, 16)
    np.testing.assert_allclose(scaled, raw[..., :16] / 4.0)
    scaled17 = geom_features(z, include_atomic_number=True)
    np.testing.assert_allclose(scaled17[..., 16], raw[..., 16] / 10.0)
    masked = geom_features(z, np.array([[1, 1, 0, 1, 0], [1, 1, 0, 0, 0]]), scaled=False)
    assert not masked[0, 2].any() and masked[0, 1].sum() == 1


def test_geom_features_decode_roundtrip_numpy_and_jax():
    rng = np.random.RandomState(0)
    z = rng.choice(EDM_ATOMIC_NB, size=(3, 7))
    mask = (rng.rand(3, 7) > 0.3).astype(np.float32)
    z = np.where(mask > 0, z, 0)
    h = geom_features(z, mask) + 0.01 * rng.randn(3, 7, 16).astype(np.float32)
    np.testing.assert_array_equal(atomic_numbers_from_geom_features(h, mask), z)
    hj = geom_features(jnp.asarray(z), jnp.asarray(mask))
    assert isinstance(hj, type(jnp.zeros(1)))
    np.testing.assert_array_equal(np.asarray(atomic_numbers_from_geom_features(hj, mask)), z)
