"""Fake data: the example GEOM release loads, random molecules are CoM-free and padded."""

import numpy as np

from symdiff_jax.data.geom_pickles import load_geom_split, load_test_mols, load_test_smiles
from symdiff_jax.testing.fake_data import random_molecule, random_molecule_batch, write_example_geom


def test_example_release_loads(tmp_path):
    """write_example_geom writes a release the loaders read: the three splits partition
    the molecules, and test_mols.pkl / test_smiles.csv hold the test split."""
    info = write_example_geom(tmp_path, num_conformers=2)
    seen = []
    for split in ("train", "val", "test"):
        out = load_geom_split(tmp_path, split)  # the release root
        assert out["skipped"] == {}
        seen += [r["smiles"] for r in out["molecules"]]
        assert all(r["positions"].shape[0] == 2 for r in out["molecules"])
    assert sorted(seen) == sorted(info["smiles"])
    test = [info["smiles"][i] for i in info["split"]["test"]]
    assert list(load_test_mols(info["data_dir"] / "test_mols.pkl")) == test
    assert load_test_smiles(info["data_dir"] / "test_smiles.csv")["smiles"].tolist() == test


def test_random_molecules_are_com_free_and_zero_on_padding():
    mask = np.array([1, 0, 1, 1, 0], np.float32)
    x, h, charges = random_molecule(3, mask)
    assert x.shape == (5, 3) and h.shape == (5, 6) and charges.shape == (5,)
    assert np.all(np.asarray(x)[mask == 0] == 0) and np.all(np.asarray(charges)[mask == 0] == 0)
    assert np.abs(np.asarray(x).sum(0)).max() < 1e-5
    batch = random_molecule_batch([0, 1], [mask, np.ones(5, np.float32)])
    assert batch["positions"].shape == (2, 5, 3) and batch["mask"].shape == (2, 5)
