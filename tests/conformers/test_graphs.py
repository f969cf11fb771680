"""Molecular graphs as arrays: relabelling-invariant features, automorphism tables, batches."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from symdiff_jax.conformers.graphs import (
    atom_feature_names,
    batch_automorphisms,
    bond_one_hot,
    molecule_arrays,
    stack_molecules,
)
from symdiff_jax.data.geom_features import GEOM_QM9_ELEMENTS
from symdiff_jax.groups import is_automorphism, molecule_graph

ELEMENTS = GEOM_QM9_ELEMENTS


def _mol(smiles):
    return Chem.AddHs(Chem.MolFromSmiles(smiles))


@pytest.mark.parametrize("smiles", ["Cc1ccccc1", "CC(C)(C)O", "OC(=O)C#N"])
def test_features_follow_a_relabelling(smiles):
    """Renumbering the atoms permutes features and bonds the same way (no atom index leaks)."""
    mol = _mol(smiles)
    n = mol.GetNumAtoms()
    order = np.random.default_rng(0).permutation(n)
    renumbered = Chem.RenumberAtoms(mol, [int(i) for i in order])
    a = molecule_arrays(mol, elements=ELEMENTS, max_atoms=n + 2)
    b = molecule_arrays(renumbered, elements=ELEMENTS, max_atoms=n + 2)
    np.testing.assert_array_equal(b["atom_features"][:n], a["atom_features"][order])
    np.testing.assert_array_equal(b["bond_types"][:n, :n], a["bond_types"][np.ix_(order, order)])
    assert not b["atom_features"][n:].any() and not b["bond_types"][n:].any()
    assert a["atom_features"].shape[1] == len(atom_feature_names(ELEMENTS))


def test_feature_values_of_toluene():
    """Spot checks against RDKit's own perception: aromatic carbons, methyl, hydrogens."""
    mol = _mol("Cc1ccccc1")
    arr = molecule_arrays(mol, elements=ELEMENTS, max_atoms=16)
    names = atom_feature_names(ELEMENTS)
    col = {name: k for k, name in enumerate(names)}
    f = arr["atom_features"]
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        assert f[i, col[f"element={atom.GetSymbol()}"]] == 1
        assert f[i, col["aromatic"]] == float(atom.GetIsAromatic())
        assert f[i, col["in_ring_of_6"]] == float(atom.IsInRingSize(6))
        heavy = sum(nb.GetAtomicNum() > 1 for nb in atom.GetNeighbors())
        assert f[i, col[f"heavy_degree={heavy}"]] == 1
        assert f[i, col[f"num_hs={atom.GetTotalNumHs(includeNeighbors=True)}"]] == 1
    assert f.sum(-1)[15] == 0  # padding


@pytest.mark.parametrize("group, expected", [("heavy", 2), ("full", 12), ("none", 1)])
def test_automorphism_rows_are_automorphisms(group, expected):
    mol = _mol("Cc1ccccc1")
    arr = molecule_arrays(mol, elements=ELEMENTS, max_atoms=20, automorphism_group=group)
    adjacency, labels = molecule_graph(mol)
    n = mol.GetNumAtoms()
    assert len(arr["automorphisms"]) == expected
    for p in arr["automorphisms"]:
        assert is_automorphism(p[:n], adjacency, labels)
        np.testing.assert_array_equal(p[n:], np.arange(n, 20))  # padding fixed


def test_cap_keeps_a_subset_and_flags_it():
    mol = _mol("CC(C)(C)C")  # neopentane: 24 heavy-atom automorphisms
    arr = molecule_arrays(mol, elements=ELEMENTS, max_atoms=17, max_automorphisms=5)
    assert len(arr["automorphisms"]) == 5 and arr["automorphisms_capped"]
    np.testing.assert_array_equal(arr["automorphisms"][0], np.arange(17))
    full = molecule_arrays(mol, elements=ELEMENTS, max_atoms=17, max_automorphisms=None)
    assert len(full["automorphisms"]) == 24 and not full["automorphisms_capped"]


def test_stack_and_batch_pad_groups_with_masked_identity_rows():
    graphs = [
        molecule_arrays(_mol(s), elements=ELEMENTS, max_atoms=16) for s in ("c1ccccc1", "CCO")
    ]
    table = stack_molecules(graphs)
    np.testing.assert_array_equal(table["aut_offsets"], [0, 12, 13])
    perms, mask = batch_automorphisms(table, np.array([1, 0]), width=16)
    assert perms.shape == (2, 16, 16)
    np.testing.assert_array_equal(mask.sum(-1), [1, 12])
    np.testing.assert_array_equal(perms[1, :12], graphs[0]["automorphisms"])
    np.testing.assert_array_equal(perms[0, 1:], np.tile(np.arange(16), (15, 1)))
    cut, cut_mask = batch_automorphisms(table, np.array([0]), width=4)
    np.testing.assert_array_equal(cut[0], graphs[0]["automorphisms"][:4])
    assert cut_mask.sum() == 4


def test_unknown_element_and_too_many_atoms_are_errors():
    with pytest.raises(ValueError, match="Cl"):
        molecule_arrays(_mol("CCl"), elements=ELEMENTS, max_atoms=10)
    with pytest.raises(ValueError, match="max_atoms"):
        molecule_arrays(_mol("CCCC"), elements=ELEMENTS, max_atoms=5)
    with pytest.raises(ValueError, match="automorphism_group"):
        molecule_arrays(_mol("C"), elements=ELEMENTS, max_atoms=5, automorphism_group="all")


def test_bond_one_hot():
    codes = np.array([[0, 1], [4, 3]])
    np.testing.assert_array_equal(
        np.asarray(bond_one_hot(codes)),
        [[[0, 0, 0, 0], [1, 0, 0, 0]], [[0, 0, 0, 1], [0, 0, 1, 0]]],
    )
