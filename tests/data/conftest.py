"""Shared by the GEOM tests: a small release written in the published formats."""

from __future__ import annotations

import numpy as np
import pytest

from symdiff_jax.testing.fake_data import etkdg_conformer, geom_molecule_dict, write_pickle


@pytest.fixture
def release(tmp_path):
    """Six molecules (one with fragments, one unparsable SMILES) in the published layout."""
    folder = tmp_path / "rdkit_folder" / "qm9"
    smiles = ["OCC#N", "CCO", "C[C@@H](O)CC", "CC(=O)O", "CC.O", "C1CC"]
    for k, s in enumerate(smiles):
        if s == "C1CC":  # RDKit cannot parse it (unclosed ring)
            propane = etkdg_conformer("CCC", k)
            entry = {"smiles": s, "conformers": [{"rd_mol": propane}]}
        else:
            entry = geom_molecule_dict(s, seed=k)
        write_pickle(entry, folder / f"{s}.pickle")
    files = sorted(str(p) for p in folder.glob("*.pickle"))
    data_dir = tmp_path / "QM9"
    data_dir.mkdir()
    split = np.empty(3, dtype=object)
    split[0] = np.array([4, 0, 2, 5, 3])  # unsorted on purpose
    split[1] = np.array([1])
    split[2] = np.array([], np.int64)
    np.save(data_dir / "split.npy", split, allow_pickle=True)
    return {"root": tmp_path, "data_dir": data_dir, "files": files, "folder": folder}
