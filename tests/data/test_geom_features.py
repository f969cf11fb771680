"""Graph featurisation of GEOM molecules against RDKit's own view of the molecule."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from symdiff_jax.data.geom_features import (
    BOND_ORDERS,
    GEOM_DRUGS_ELEMENTS,
    GEOM_QM9_ELEMENTS,
    HYBRIDISATIONS,
    graph_features,
)


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
    assert graph_features(Chem.MolFromSmiles("CCl"), elements=GEOM_DRUGS_ELEMENTS)
    with pytest.raises(ValueError, match="max_atoms"):
        graph_features(mol, max_atoms=n - 1)
