"""Conformer metrics (COV-R/P, AMR-R/P) against direct RDKit loops and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign
from scipy.spatial.transform import Rotation

from symdiff_jax.metrics.conformers import (
    conformer_metrics,
    coverage_curve,
    evaluate_molecules,
    metrics_from_rmsd,
    rmsd_matrix,
    summarise,
)

TOLUENE = "Cc1ccccc1"
TBU_BENZENE = "CC(C)(C)c1ccccc1"
MESITYLENE = "Cc1cc(C)cc(C)c1"
ISOBUTYLBENZENE = "CC(C)Cc1ccccc1"  # flexible, with a symmetric isopropyl end


def conformers(smiles: str, num: int, seed: int, noise: float = 0.15) -> list:
    """`num` single-conformer Mols (with hydrogens): ETKDG, then Gaussian jitter and a rigid move."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=num, randomSeed=seed))
    assert len(cids) == num
    rng = np.random.default_rng(seed)
    out = []
    for c in cids:
        pos = mol.GetConformer(c).GetPositions()
        pos = pos + noise * rng.normal(size=pos.shape)
        pos = Rotation.random(random_state=rng).apply(pos) + rng.normal(size=3)
        out.append(with_positions(mol, pos))
    return out


def with_positions(mol, pos):
    m = Chem.Mol(mol)
    m.RemoveAllConformers()
    conf = Chem.Conformer(m.GetNumAtoms())
    for i, p in enumerate(np.asarray(pos, float)):
        conf.SetAtomPosition(i, p.tolist())
    m.AddConformer(conf, assignId=True)
    return m


def key_of(t: float) -> str:
    """The documented key format: `%g`, or the exact repr when `%g` rounds."""
    return f"{t:g}" if float(f"{t:g}") == t else repr(float(t))


def direct_rmsd(generated, references):
    """The double loop of the reference evaluation code: GetBestRMS on RemoveHs copies."""
    return np.array(
        [
            [rdMolAlign.GetBestRMS(Chem.RemoveHs(g), Chem.RemoveHs(r)) for g in generated]
            for r in references
        ]
    )


@pytest.fixture(scope="module")
def sets():
    return {
        smi: (conformers(smi, 6, seed=k), conformers(smi, 3, seed=100 + k))
        for k, smi in enumerate([TOLUENE, TBU_BENZENE, MESITYLENE, ISOBUTYLBENZENE])
    }


@pytest.mark.parametrize("smiles", [TOLUENE, TBU_BENZENE, MESITYLENE, ISOBUTYLBENZENE])
def test_rmsd_matrix_matches_direct_getbestrms_loop(sets, smiles):
    generated, references = sets[smiles]
    got = rmsd_matrix(generated, references)
    expected = direct_rmsd(generated, references)
    assert got.shape == (3, 6)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert np.all(expected > 0.01)  # the jitter makes every pair differ


@pytest.mark.parametrize("smiles", [TOLUENE, ISOBUTYLBENZENE])
def test_metrics_match_definitions(sets, smiles):
    generated, references = sets[smiles]
    d = direct_rmsd(generated, references)
    thresholds = (0.1, 0.5, float(np.median(d)))
    got = conformer_metrics(generated, references, thresholds)
    for t in thresholds:
        cov_r = np.mean([any(d[r, g] < t for g in range(6)) for r in range(3)])
        cov_p = np.mean([any(d[r, g] < t for r in range(3)) for g in range(6)])
        assert got[f"cov_r@{key_of(t)}"] == pytest.approx(cov_r, abs=1e-12)
        assert got[f"cov_p@{key_of(t)}"] == pytest.approx(cov_p, abs=1e-12)
    assert got["amr_r"] == pytest.approx(np.mean([min(d[r]) for r in range(3)]), abs=1e-6)
    assert got["amr_p"] == pytest.approx(np.mean([min(d[:, g]) for g in range(6)]), abs=1e-6)
    # The median threshold gives a non-trivial precision coverage (guards a vacuous test).
    assert 0 < got[f"cov_p@{key_of(thresholds[2])}"] < 1


def test_hand_worked_matrix():
    """Rows are references, columns generated; orientation and strictness by hand."""
    rmsd = np.array([[0.05, 0.6, 0.3], [0.4, 0.2, 0.7]])
    got = metrics_from_rmsd(rmsd, (0.1, 0.3))
    # ref minima 0.05, 0.2; generated minima 0.05, 0.2, 0.3 (0.3 < 0.3 is false).
    assert got == pytest.approx(
        {
            "cov_r@0.1": 0.5,
            "cov_p@0.1": 1 / 3,
            "cov_r@0.3": 1.0,
            "cov_p@0.3": 2 / 3,
            "amr_r": 0.125,
            "amr_p": 0.55 / 3,
        }
    )
    curve = coverage_curve(rmsd, [0.0, 0.1, 0.3, 1.0])
    np.testing.assert_allclose(curve["cov_r"], [0, 0.5, 1, 1])
    np.testing.assert_allclose(curve["cov_p"], [0, 1 / 3, 2 / 3, 1])


def test_default_keys_are_the_contract(sets):
    generated, references = sets[TOLUENE]
    got = conformer_metrics(generated, references)
    assert set(got) == {"cov_r@0.1", "cov_p@0.1", "cov_r@0.5", "cov_p@0.5", "amr_r", "amr_p"}
    assert all(isinstance(v, float) for v in got.values())


def test_threshold_equal_to_an_rmsd_does_not_count(sets):
    generated, references = sets[TBU_BENZENE]
    # One pair: coverage flips from 0 to 1 just above the RMSD, not at it.
    r = rmsd_matrix(generated[:1], references[:1])[0, 0]
    at = conformer_metrics(generated[:1], references[:1], (r,))
    above = conformer_metrics(generated[:1], references[:1], (np.nextafter(r, np.inf),))
    assert list(at.values())[:2] == [0.0, 0.0]
    assert list(above.values())[:2] == [1.0, 1.0]
    # Whole set: the reference whose best match equals the threshold is not covered.
    d = rmsd_matrix(generated, references)
    best = d.min(axis=1)
    t = float(best[1])
    got = conformer_metrics(generated, references, (t,))
    assert got[f"cov_r@{key_of(t)}"] == pytest.approx(np.mean(best < t))
    assert np.sum(best <= t) == np.sum(best < t) + 1


def relabel(mol, perm):
    """Atom i of the result sits where atom perm[i] of `mol` sits (same graph if perm is an
    automorphism)."""
    pos = mol.GetConformer().GetPositions()
    return with_positions(mol, pos[np.asarray(perm)])


@pytest.mark.parametrize(
    ("smiles", "perm"),
    [
        # tert-butylbenzene heavy atoms: methyls 0, 2, 3 on carbon 1; swap two methyls.
        (TBU_BENZENE, [3, 1, 2, 0, 4, 5, 6, 7, 8, 9]),
        # isobutylbenzene heavy atoms: methyls 0 and 2 on carbon 1; swap them.
        (ISOBUTYLBENZENE, [2, 1, 0, 3, 4, 5, 6, 7, 8, 9]),
    ],
)
def test_symmetry_aware_rmsd_beats_naive(smiles, perm):
    """A relabelling by a graph automorphism that no rotation undoes: RMSD 0, naive ~1 A."""
    heavy = Chem.RemoveHs(conformers(smiles, 1, seed=7, noise=0.0)[0])
    swapped = relabel(heavy, perm)
    naive = rdMolAlign.AlignMol(Chem.Mol(swapped), heavy)  # fixed atom order
    best = rmsd_matrix([swapped], [heavy])[0, 0]
    assert naive > 0.5
    assert best < 1e-4
    got = conformer_metrics([swapped], [heavy], (0.1,))
    assert got["cov_r@0.1"] == 1.0 and got["amr_r"] < 1e-4


def test_hydrogens_are_ignored(sets):
    generated, references = sets[ISOBUTYLBENZENE]
    rng = np.random.default_rng(3)
    moved = []
    for m in generated:
        pos = m.GetConformer().GetPositions()
        is_h = np.array([a.GetAtomicNum() == 1 for a in m.GetAtoms()])
        pos[is_h] += 0.7 * rng.normal(size=(is_h.sum(), 3))
        moved.append(with_positions(m, pos))
    assert conformer_metrics(moved, references) == conformer_metrics(generated, references)
    # With hydrogens counted the same move does change the RMSD (the move is not a no-op).
    with_h = rmsd_matrix(moved[:2], references[:1], heavy_atoms=False, max_matches=1000)
    base = rmsd_matrix(generated[:2], references[:1], heavy_atoms=False, max_matches=1000)
    assert np.all(np.abs(with_h - base) > 1e-3)


def test_inputs_are_not_modified(sets):
    generated, references = sets[TOLUENE]
    before = [m.GetConformer().GetPositions().copy() for m in generated + references]
    conformer_metrics(generated, references)
    after = [m.GetConformer().GetPositions() for m in generated + references]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_serial_equals_parallel_and_summary(sets):
    pairs = [sets[s] for s in (TOLUENE, MESITYLENE, ISOBUTYLBENZENE)]
    serial = evaluate_molecules(pairs, thresholds=(0.1, 0.5), num_workers=0, progress=False)
    parallel = evaluate_molecules(pairs, thresholds=(0.1, 0.5), num_workers=2, progress=False)
    assert serial == parallel
    assert serial == [conformer_metrics(g, r) for g, r in pairs]
    summary = summarise(serial)
    for key in serial[0]:
        values = [d[key] for d in serial]
        assert summary[f"{key}_mean"] == pytest.approx(np.mean(values))
        assert summary[f"{key}_median"] == pytest.approx(np.median(values))
    assert len(summary) == 2 * len(serial[0])


def test_summarise_hand_values():
    got = summarise([{"a": 1.0, "b": 0.0}, {"a": 2.0, "b": 0.0}, {"a": 6.0, "b": 3.0}])
    assert got == {"a_mean": 3.0, "a_median": 2.0, "b_mean": 1.0, "b_median": 0.0}
    with pytest.raises(ValueError, match="same metrics"):
        summarise([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError, match="at least one"):
        summarise([])


def test_input_errors(sets):
    generated, references = sets[TOLUENE]
    with pytest.raises(ValueError, match="generated is empty"):
        conformer_metrics([], references)
    with pytest.raises(ValueError, match="references is empty"):
        conformer_metrics(generated, [])
    other = sets[MESITYLENE][1]
    with pytest.raises(ValueError, match=r"one molecule.*generated\[0\].*Cc1cc\(C\)cc\(C\)c1"):
        conformer_metrics(other, references)
    two = Chem.Mol(generated[0])
    two.AddConformer(Chem.Conformer(two.GetConformer()), assignId=True)
    with pytest.raises(ValueError, match=r"generated\[1\] has 2 conformers"):
        conformer_metrics([generated[0], two], references)
    with pytest.raises(ValueError, match="single Mol"):
        conformer_metrics(generated[0], references)
    with pytest.raises(ValueError, match=">= 0"):
        conformer_metrics(generated, references, (-0.1,))
    with pytest.raises(ValueError, match="pair 1"):
        evaluate_molecules([(generated, references), (other, references)], num_workers=0)
    with pytest.raises(ValueError, match="pair 1"):
        evaluate_molecules([(generated, references), ([], references)], num_workers=0)
    with pytest.raises(ValueError, match="pairs is empty"):
        evaluate_molecules([], num_workers=0)
