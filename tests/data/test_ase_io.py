"""Molecules to ASE Atoms and ASE databases, checked with ASE's own reader."""

from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.data.ase_io import read_ase_db, to_ase_atoms, write_ase_db

# Water and HCN (Angstrom), padded to 4 slots with junk coordinates in the padding.
X = np.array(
    [
        [[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.24, 0.9266, 0.0], [50.0, 50.0, 50.0]],
        [[0.0, 0.0, -1.6644], [0.0, 0.0, -0.5985], [0.0, 0.0, 0.56], [9.0, 9.0, 9.0]],
    ]
)
Z = np.array([[8, 1, 1, 0], [1, 6, 7, 0]])


def test_to_ase_atoms_keeps_real_atoms_in_slot_order():
    pytest.importorskip("ase")
    atoms = to_ase_atoms(jnp.asarray(X), jnp.asarray(Z))
    assert len(atoms) == 2
    assert atoms[0].get_chemical_formula() == "H2O"
    assert atoms[1].get_chemical_symbols() == ["H", "C", "N"]
    for a, x, z in zip(atoms, X, Z, strict=True):
        np.testing.assert_array_equal(a.numbers, z[:3])
        np.testing.assert_allclose(a.positions, x[:3])
    # An explicit mask drops atoms whatever their atomic number.
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]])
    assert len(to_ase_atoms(X, Z, mask)[0]) == 2


def test_write_and_read_ase_db(tmp_path):
    pytest.importorskip("ase")
    import ase.db  # noqa: F401

    path = tmp_path / "out" / "samples.db"
    assert write_ase_db(path, X, Z) == 2
    rows = list(ase.db.connect(str(path)).select())
    assert [r.sample_index for r in rows] == [0, 1]
    np.testing.assert_allclose(rows[1].toatoms().positions, X[1, :3])
    read = read_ase_db(path)
    assert [name for name, _ in read] == ["row 1", "row 2"]
    np.testing.assert_array_equal(read[0][1][0], Z[0, :3])
    # Rewriting replaces the database; append adds rows.
    write_ase_db(path, X[:1], Z[:1])
    assert len(read_ase_db(path)) == 1
    write_ase_db(path, X, Z, append=True)
    assert len(read_ase_db(path)) == 3


def test_missing_ase_is_a_one_line_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ase", None)
    hint = r'^ASE is not installed; install it with pip install -e "\.\[ase\]"'
    with pytest.raises(ImportError, match=hint):
        to_ase_atoms(X, Z)
