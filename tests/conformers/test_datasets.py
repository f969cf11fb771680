"""Conformer tables from RDKit molecules, their graphs, batches and the resumable order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from symdiff_jax.conformers.datasets import (
    conformer_batch,
    graph_mol,
    reference_mols,
    table_from_mols,
    train_batches,
)
from symdiff_jax.data.geom_features import GEOM_QM9_ELEMENTS

SMILES = ("CCO", "C=CC#N", "c1ccoc1")


def _table(num_conformers=(3, 1, 2), log_weights=None):
    mols, positions = [], []
    for k, (s, c) in enumerate(zip(SMILES, num_conformers, strict=True)):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        ids = AllChem.EmbedMultipleConfs(mol, numConfs=c, randomSeed=k + 1)
        positions.append(np.stack([mol.GetConformer(i).GetPositions() + 5.0 for i in ids]))
        mol.RemoveAllConformers()
        mols.append(mol)
    table = table_from_mols(mols, positions, log_weights, elements=GEOM_QM9_ELEMENTS, max_atoms=12)
    return table, mols, positions


def test_table_rows_offsets_weights_and_centring():
    w = [np.log([1.0, 2.0, 5.0]), np.zeros(1), np.log([3.0, 1.0])]
    table, mols, positions = _table(log_weights=w)
    np.testing.assert_array_equal(table["conformer_offsets"], [0, 3, 4, 6])
    np.testing.assert_array_equal(table["molecule"], [0, 0, 0, 1, 2, 2])
    # Weights renormalised per molecule so that their mean (not sum) is one.
    np.testing.assert_allclose(
        np.exp(table["log_weight"][:3]), 3 * np.array([1, 2, 5]) / 8, rtol=1e-6
    )
    np.testing.assert_allclose(np.exp(table["log_weight"][4:]), [1.5, 0.5], rtol=1e-6)
    for m, mol in enumerate(mols):
        n = mol.GetNumAtoms()
        assert table["num_atoms"][m] == n
        rows = table["positions"][table["molecule"] == m]
        want = positions[m] - positions[m].mean(axis=1, keepdims=True)
        np.testing.assert_allclose(rows[:, :n], want, atol=1e-5)
        np.testing.assert_array_equal(rows[:, n:], 0.0)


def test_table_rejects_positions_of_the_wrong_size():
    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    with pytest.raises(ValueError, match=r"molecule 0: conformers have shape \(3, 3\)"):
        table_from_mols([mol], [np.zeros((1, 3, 3))], elements=GEOM_QM9_ELEMENTS, max_atoms=8)


def test_graph_mol_rebuilds_the_molecule_and_reference_mols_its_conformers():
    table, mols, _ = _table()
    for m, mol in enumerate(mols):
        rebuilt = graph_mol(table, m)
        assert Chem.MolToSmiles(Chem.RemoveHs(rebuilt)) == Chem.MolToSmiles(Chem.RemoveHs(mol))
        refs = reference_mols(table, m)
        rows = table["positions"][table["molecule"] == m]
        assert len(refs) == len(rows)
        n = mol.GetNumAtoms()
        for ref, x in zip(refs, rows, strict=True):
            np.testing.assert_allclose(ref.GetConformer().GetPositions(), x[:n], atol=1e-6)


def test_conformer_batch_bank_is_own_conformer_then_heaviest_others():
    w = [np.log([1.0, 2.0, 5.0]), np.zeros(1), np.log([3.0, 1.0])]
    table, _, _ = _table(log_weights=w)
    b = conformer_batch(table, np.array([0, 3]), automorphism_width=4, bank_size=3)
    np.testing.assert_array_equal(b["molecule"], [0, 1])
    np.testing.assert_array_equal(b["bank"][0, 0], table["positions"][0])
    np.testing.assert_array_equal(b["bank"][0, 1], table["positions"][2])  # weight 5 first
    np.testing.assert_array_equal(b["bank"][0, 2], table["positions"][1])
    assert np.all(np.isneginf(b["bank_log_weights"][1, 1:]))  # one conformer: padded bank
    assert b["mask"].sum(1).tolist() == [table["num_atoms"][0], table["num_atoms"][1]]
    assert b["automorphisms"].shape == (2, 4, 12)


def test_train_batches_resume_where_an_uninterrupted_run_is():
    table, _, _ = _table()
    fresh = list(itertools.islice(train_batches(table, 2, seed=7, automorphism_width=2), 7))
    resumed = next(train_batches(table, 2, seed=7, start_step=5, automorphism_width=2))
    np.testing.assert_array_equal(resumed["positions"], fresh[5]["positions"])
    epoch = np.concatenate([b["molecule"] for b in fresh[:3]])
    assert sorted(epoch.tolist()) == sorted(table["molecule"].tolist())  # one epoch, each row once
    with pytest.raises(ValueError, match="larger than the training set"):
        next(train_batches(table, 7, seed=0, automorphism_width=2))
