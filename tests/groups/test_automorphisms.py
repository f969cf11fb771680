"""Graph automorphism groups: RDKit self-matches against brute-force enumeration."""

from __future__ import annotations

import itertools
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from rdkit import Chem

from symdiff_jax.groups import permute
from symdiff_jax.groups.automorphisms import (
    automorphisms_from_adjacency,
    graph_automorphisms,
    is_automorphism,
    molecule_graph,
    pad_permutations,
)

# (SMILES, add explicit hydrogens, |Aut| from the chemistry).
MOLECULES = [
    ("CC", True, 72),  # ethane: 3! x 3! hydrogens x 2 carbon swap
    ("C", True, 24),  # methane: S4 on the hydrogens
    ("c1ccccc1", False, 12),  # benzene heavy atoms: dihedral group D6
    ("O", True, 2),  # water: swap the hydrogens
    ("OC(=O)CCN", False, 1),  # beta-alanine heavy atoms: no symmetry
    ("Cc1ccccc1", True, 12),  # toluene: ring flip x 3! methyl hydrogens
]


def mol(smiles: str, hydrogens: bool):
    m = Chem.MolFromSmiles(smiles)
    return Chem.AddHs(m) if hydrogens else m


def plain_graph(m):
    """Adjacency (2 x bond order, so aromatic 1.5 -> 3) and atomic numbers, straight from RDKit."""
    adjacency = np.rint(2 * Chem.GetAdjacencyMatrix(m, useBO=True)).astype(int)
    labels = np.array([a.GetAtomicNum() for a in m.GetAtoms()])
    return adjacency, labels


def exhaustive(adjacency, labels):
    """Every permutation of range(N), kept if it preserves labels and adjacency (N <= 8)."""
    n = len(labels)
    perms = np.array(list(itertools.permutations(range(n))))
    ok = np.all(labels[perms] == labels, axis=1)
    perms = perms[ok]
    ok = np.all(adjacency[perms[:, :, None], perms[:, None, :]] == adjacency, axis=(1, 2))
    return perms[ok]


def as_set(perms):
    return {tuple(int(v) for v in p) for p in perms}


@pytest.mark.parametrize(("smiles", "hydrogens", "order"), MOLECULES)
def test_rdkit_matches_brute_force(smiles, hydrogens, order):
    m = mol(smiles, hydrogens)
    adjacency, labels = plain_graph(m)
    expected = automorphisms_from_adjacency(adjacency, labels)
    got = graph_automorphisms(m)
    assert got.dtype == np.int32 and got.shape == (order, m.GetNumAtoms())
    assert len(expected) == order
    assert len(as_set(got)) == len(got)  # no duplicates
    assert as_set(got) == as_set(expected)
    np.testing.assert_array_equal(got[0], np.arange(m.GetNumAtoms()))


@pytest.mark.parametrize(
    ("smiles", "hydrogens", "order"),
    [c for c in MOLECULES if mol(c[0], c[1]).GetNumAtoms() <= 8],
)
def test_backtracking_matches_exhaustive_permutations(smiles, hydrogens, order):
    m = mol(smiles, hydrogens)
    adjacency, labels = plain_graph(m)
    expected = exhaustive(adjacency, labels)
    got = automorphisms_from_adjacency(adjacency, labels)
    assert len(expected) == order
    np.testing.assert_array_equal(got, expected)  # both in lexicographic order


def test_large_group_neopentane_with_hydrogens():
    """|Aut| = 4! (methyls) x (3!)^4 (their hydrogens) = 31,104; RDKit finds all of them."""
    m = mol("CC(C)(C)C", True)
    got = graph_automorphisms(m)
    assert len(got) == 31104 == len(as_set(got))
    assert as_set(got) == as_set(automorphisms_from_adjacency(*plain_graph(m)))


@pytest.mark.parametrize(("smiles", "hydrogens", "order"), MOLECULES)
def test_every_row_is_an_automorphism_acting_through_permute(smiles, hydrogens, order):
    m = mol(smiles, hydrogens)
    adjacency, labels = plain_graph(m)
    perms = graph_automorphisms(m)
    onehot = np.eye(int(labels.max()) + 1)[labels]
    for p in perms:
        assert is_automorphism(p, adjacency, labels)
        # out_i = a_{p[i]}: permuting rows and columns leaves the labelled graph unchanged.
        pj = jnp.asarray(p)
        rows = permute(jnp.asarray(adjacency), pj, axis=-2)
        both = permute(rows, pj, axis=-1)
        np.testing.assert_array_equal(np.asarray(both), adjacency)
        np.testing.assert_array_equal(np.asarray(permute(jnp.asarray(onehot), pj)), onehot)


@pytest.mark.parametrize(("smiles", "hydrogens"), [("CC", True), ("c1ccccc1", False)])
def test_group_closure_and_inverses(smiles, hydrogens):
    perms = graph_automorphisms(mol(smiles, hydrogens))
    group = as_set(perms)
    for p in perms:
        assert tuple(np.argsort(p)) in group
        for q in perms:
            # permute(permute(a, p), q)_i = a_{p[q[i]]}
            assert tuple(p[q]) in group


def test_cap_returns_documented_subset_and_warns():
    m = mol("CC", True)
    full = as_set(graph_automorphisms(m))
    with pytest.warns(RuntimeWarning, match=r"max_count=10") as record:
        capped = graph_automorphisms(m, max_count=10)
    message = str(record[0].message)
    assert Chem.MolToSmiles(m) in message  # names the molecule
    assert capped.shape == (10, 8)
    np.testing.assert_array_equal(capped[0], np.arange(8))
    assert len(as_set(capped)) == 10 and as_set(capped) <= full
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert graph_automorphisms(m, max_count=10, warn=False).shape == (10, 8)
        assert len(graph_automorphisms(m, max_count=72)) == 72  # at the group order: no cap


def test_features_distinguish_charge_and_bond_types():
    # Heavy-atom graph of 2-aminoethylammonium: the ends differ only by charge / H count.
    ion = Chem.MolFromSmiles("NCC[NH3+]")
    assert len(graph_automorphisms(ion)) == 1
    assert len(graph_automorphisms(ion, use_features=False)) == 2
    # A Kekule benzene: bond types keep only the rotations by 120 degrees and 3 mirrors.
    kekule = Chem.MolFromSmiles("c1ccccc1")
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    assert len(graph_automorphisms(kekule)) == 6
    assert len(graph_automorphisms(kekule, use_features=False)) == 12
    adjacency, labels = molecule_graph(kekule)
    assert as_set(graph_automorphisms(kekule)) == as_set(
        automorphisms_from_adjacency(adjacency, labels)
    )


@pytest.mark.parametrize(
    ("edges", "labels", "order"),
    [
        ([1, 1, 1, 1], [0, 0, 0, 0], 8),  # square: dihedral group D4
        ([1, 1, 1, 1], [0, 1, 0, 0], 2),  # one marked corner: the diagonal mirror
        ([1, 2, 1, 2], [0, 0, 0, 0], 4),  # alternating edge labels
        ([1, 2, 3, 4], [0, 0, 0, 0], 1),
    ],
)
def test_graph_input_matches_brute_force(edges, labels, order):
    adjacency = np.zeros((4, 4), int)
    for i, e in enumerate(edges):
        adjacency[i, (i + 1) % 4] = adjacency[(i + 1) % 4, i] = e
    labels = np.array(labels)
    got = graph_automorphisms((adjacency, labels))
    expected = exhaustive(adjacency, labels)
    assert len(expected) == order
    assert as_set(got) == as_set(expected)
    np.testing.assert_array_equal(automorphisms_from_adjacency(adjacency, labels), expected)
    np.testing.assert_array_equal(got[0], np.arange(4))


def test_is_automorphism_rejects_non_automorphisms():
    adjacency, labels = plain_graph(mol("OC(=O)CCN", False))
    n = len(labels)
    assert is_automorphism(np.arange(n), adjacency, labels)
    assert not is_automorphism(np.array([0, 0, 2, 3, 4, 5]), adjacency, labels)  # not a bijection
    assert not is_automorphism(np.array([2, 1, 0, 3, 4, 5]), adjacency, labels)  # O=C vs O-C
    assert not is_automorphism(np.array([5, 1, 2, 3, 4, 0]), adjacency, labels)  # O vs N
    # A square with one marked corner: the rotation keeps the edges but moves the mark.
    square = np.roll(np.eye(4, dtype=int), 1, axis=1) + np.roll(np.eye(4, dtype=int), -1, axis=1)
    rotation = np.array([1, 2, 3, 0])
    assert is_automorphism(rotation, square, np.zeros(4))
    assert not is_automorphism(rotation, square, np.array([1, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        is_automorphism(np.arange(5), adjacency, labels)


def test_pad_permutations_fixes_padding():
    perms = graph_automorphisms(mol("O", True))  # [[0, 1, 2], [0, 2, 1]]
    padded = pad_permutations(perms, 5)
    np.testing.assert_array_equal(padded, [[0, 1, 2, 3, 4], [0, 2, 1, 3, 4]])
    x = jnp.arange(15.0).reshape(5, 3)
    y = permute(x, jnp.asarray(padded[1]))
    np.testing.assert_array_equal(np.asarray(y[3:]), np.asarray(x[3:]))
    np.testing.assert_array_equal(np.asarray(y[1]), np.asarray(x[2]))
    with pytest.raises(ValueError, match="max_atoms=2"):
        pad_permutations(perms, 2)


def test_input_errors():
    with pytest.raises(ValueError, match="symmetric"):
        graph_automorphisms((np.triu(np.ones((3, 3), int), 1), np.zeros(3)))
    with pytest.raises(ValueError, match="labels must have shape"):
        automorphisms_from_adjacency(np.zeros((3, 3), int), np.zeros(4))
    with pytest.raises(ValueError, match="max_count must be >= 1"):
        graph_automorphisms(mol("O", True), max_count=0)
    with pytest.raises(ValueError, match="rdkit.Chem.Mol or a pair"):
        graph_automorphisms("CCO")


@pytest.mark.parametrize(
    "smiles", ["CC(C)(C)C", "c1ccccc1", "Cc1ccccc1", "OC(=O)CC(=O)O", "CC(C)C(C)C", "C1CC1"]
)
def test_heavy_atom_automorphisms_are_the_heavy_part_of_the_full_group(smiles):
    """One lift per heavy-atom relabelling of Aut(G): same heavy projections as the full group.

    The full group is `graph_automorphisms` (checked against brute force above); the rows
    must be automorphisms, closed under composition, and project onto exactly the set of
    heavy-atom relabellings that the full group induces, each once.
    """
    from rdkit import Chem

    from symdiff_jax.groups import heavy_atom_automorphisms

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    rows = heavy_atom_automorphisms(mol)
    adjacency, labels = molecule_graph(mol)
    assert all(is_automorphism(p, adjacency, labels) for p in rows)
    as_set = {tuple(p) for p in rows}
    assert len(as_set) == len(rows)
    assert all(tuple(np.asarray(a)[np.asarray(b)]) in as_set for a in rows for b in rows)
    projections = {tuple(p[heavy]) for p in graph_automorphisms(mol)}
    assert {tuple(p[heavy]) for p in rows} == projections
    assert len(rows) == len(projections)
