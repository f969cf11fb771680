"""Tests for symdiff_jax.conformers.etkdg (the RDKit ETKDGv3 + MMFF baseline)."""

import warnings

import numpy as np
import pytest

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers  # noqa: E402

from symdiff_jax.conformers import chirality as ch  # noqa: E402
from symdiff_jax.conformers.etkdg import INFO_KEYS, etkdg_baseline, etkdg_conformers  # noqa: E402
from symdiff_jax.metrics.conformers import conformer_metrics  # noqa: E402

SMILES = {"ethanol": "CCO", "toluene": "Cc1ccccc1", "L-threonine": "C[C@@H](O)[C@H](N)C(=O)O"}


def _mol(smiles):
    return Chem.AddHs(Chem.MolFromSmiles(smiles))


def _coords(mols):
    return np.stack([m.GetConformer().GetPositions() for m in mols])


def _mmff_energy(mol):
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    return rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props).CalcEnergy()


@pytest.mark.parametrize("name", sorted(SMILES))
def test_counts_atom_order_and_bonds(name):
    mol = _mol(SMILES[name])
    out, info = etkdg_conformers(mol, 3, seed=0, return_info=True)  # 0: RDKit's trap
    assert len(out) == 3 and info["embedded"] == 3 and info["embed_failures"] == 0
    want_z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    adjacency = Chem.GetAdjacencyMatrix(mol, useBO=True)
    for m in out:
        assert m.GetNumConformers() == 1 and m.GetConformer().GetId() == 0
        assert [a.GetAtomicNum() for a in m.GetAtoms()] == want_z
        np.testing.assert_array_equal(Chem.GetAdjacencyMatrix(m, useBO=True), adjacency)
        x = m.GetConformer().GetPositions()
        for b in m.GetBonds():  # bonded atoms at bonded distances (0.9-1.6 A here)
            d = np.linalg.norm(x[b.GetBeginAtomIdx()] - x[b.GetEndAtomIdx()])
            assert 0.9 < d < 1.6
    x = _coords(out)
    assert not np.allclose(x[0], x[1]) and not np.allclose(x[1], x[2])  # distinct draws
    assert mol.GetNumConformers() == 0  # the input is not modified


def test_chiral_molecule_keeps_its_stereo():
    mol = _mol(SMILES["L-threonine"])
    centres, neighbours, signs = ch.chiral_centres_from_mol(mol)
    out = etkdg_conformers(mol, 4, seed=2)
    vol = np.asarray(ch.signed_volumes(_coords(out), centres, neighbours))
    np.testing.assert_array_equal(np.sign(vol), np.broadcast_to(signs, vol.shape))


def test_reproducible_with_a_seed_and_input_coordinates_ignored():
    mol = _mol(SMILES["toluene"])
    a = _coords(etkdg_conformers(mol, 2, seed=5))
    b = _coords(etkdg_conformers(mol, 2, seed=5))
    c = _coords(etkdg_conformers(mol, 2, seed=6))
    np.testing.assert_array_equal(a, b)
    for i in range(2):  # neighbouring seeds share no conformer
        for j in range(2):
            assert not np.allclose(a[i], c[j])
    # a Mol that carries (absurd) coordinates gives the same conformers: nothing leaks
    with_conf = Chem.Mol(mol)
    conf = Chem.Conformer(mol.GetNumAtoms())
    for i in range(mol.GetNumAtoms()):
        conf.SetAtomPosition(i, [100.0 + i, 0.0, 0.0])
    with_conf.AddConformer(conf, assignId=True)
    np.testing.assert_array_equal(_coords(etkdg_conformers(with_conf, 2, seed=5)), a)
    assert with_conf.GetNumConformers() == 1


def test_mmff_lowers_the_energy():
    mol = _mol("CCCCO")
    raw = etkdg_conformers(mol, 3, seed=3, mmff=False)
    opt = etkdg_conformers(mol, 3, seed=3, mmff=True)
    for r, o in zip(raw, opt, strict=True):
        assert _mmff_energy(o) < _mmff_energy(r) - 1e-3


def test_implicit_hydrogens_are_added_after_the_given_atoms():
    mol = Chem.MolFromSmiles("CCO")
    out = etkdg_conformers(mol, 1, seed=0)
    assert out[0].GetNumAtoms() == 9
    assert [a.GetSymbol() for a in out[0].GetAtoms()][:3] == ["C", "C", "O"]


def test_mmff_without_parameters_is_skipped_and_counted():
    mol = _mol("B(C)(C)C")  # MMFF94 has no boron parameters
    assert not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol)
    out, info = etkdg_conformers(mol, 2, seed=0, return_info=True)
    assert len(out) == 2 and info["mmff_skipped"] == 2
    np.testing.assert_array_equal(_coords(out), _coords(etkdg_conformers(mol, 2, mmff=False)))


def test_embedding_failures_retry_then_warn(monkeypatch):
    real = rdDistGeom.EmbedMultipleConfs
    calls = []

    def only_random_coords(mol, num, params):
        calls.append(params.useRandomCoords)
        return real(mol, num, params) if params.useRandomCoords else []

    monkeypatch.setattr(rdDistGeom, "EmbedMultipleConfs", only_random_coords)
    mol = _mol(SMILES["ethanol"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a successful retry does not warn
        out, info = etkdg_conformers(mol, 2, seed=0, return_info=True)
    assert calls == [False, True] and len(out) == 2 and info["random_coords_retries"] == 1

    monkeypatch.setattr(rdDistGeom, "EmbedMultipleConfs", lambda mol, num, params: [])
    mol.SetProp("_Name", "hopeless")
    with pytest.warns(RuntimeWarning, match="0 of 2 conformers for molecule hopeless"):
        out, info = etkdg_conformers(mol, 2, seed=0, return_info=True)
    assert out == [] and info["embed_failures"] == 2


def test_strained_cage_with_stereo_embeds_through_the_fallback():
    """RDKit's final centre-in-volume check rejects this cage; the fallback embeds it."""
    mol = _mol("C1[C@H]2[C@@H]3C[C@H]2[C@H]13")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, info = etkdg_conformers(mol, 2, seed=0, return_info=True)
    assert len(out) == 2 and info["embed_failures"] == 0
    centres, neighbours, signs = ch.chiral_centres_from_mol(mol)
    vol = np.asarray(ch.signed_volumes(_coords(out), centres, neighbours))
    np.testing.assert_array_equal(np.sign(vol), np.broadcast_to(signs, vol.shape))


def test_unenforced_fallback_drops_the_wrong_hand(monkeypatch):
    """With the chirality checks off, mirrored embeddings must be filtered out."""
    real = rdDistGeom.EmbedMultipleConfs

    def mirror_every_other(mol, num, params):
        if params.enforceChirality:
            return []
        ids = list(real(mol, num, params))
        for cid in ids[1::2]:
            conf = mol.GetConformer(int(cid))
            for i in range(mol.GetNumAtoms()):
                p = conf.GetAtomPosition(i)
                conf.SetAtomPosition(i, [-p.x, p.y, p.z])
        return ids

    monkeypatch.setattr(rdDistGeom, "EmbedMultipleConfs", mirror_every_other)
    mol = _mol(SMILES["L-threonine"])
    out, info = etkdg_conformers(mol, 3, seed=0, return_info=True)
    assert len(out) == 3 and info["unenforced_chirality"] == 3
    centres, neighbours, signs = ch.chiral_centres_from_mol(mol)
    vol = np.asarray(ch.signed_volumes(_coords(out), centres, neighbours))
    np.testing.assert_array_equal(np.sign(vol), np.broadcast_to(signs, vol.shape))


def test_argument_errors():
    mol = _mol("CC")
    with pytest.raises(ValueError, match="num_conformers must be >= 1"):
        etkdg_conformers(mol, 0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        etkdg_conformers(mol, 1, seed=-1)
    with pytest.raises(ValueError, match="mmff_variant"):
        etkdg_conformers(mol, 1, mmff_variant="UFF")
    with pytest.raises(ValueError, match="molecules is empty"):
        etkdg_baseline([])
    with pytest.raises(ValueError, match="num_per_reference"):
        etkdg_baseline([(mol, [mol])], num_per_reference=0)


@pytest.fixture(scope="module")
def qm9_three():
    pytest.importorskip("qm9pack", reason="qm9_conformers needs the qm9pack wheel")
    from symdiff_jax.conformers.qm9_conformers import as_rdkit_mol, load_qm9_conformers

    try:
        data = load_qm9_conformers("test", max_molecules=20)
    except (ImportError, FileNotFoundError) as err:  # pragma: no cover - env without QM9
        pytest.skip(f"qm9_conformers test split unavailable: {err}")
    # three molecules with at least three heavy atoms (RMSD needs a shape to align)
    rows = [i for i in range(len(data["num_atoms"])) if (data["charges"][i] > 1).sum() >= 3]
    return [(as_rdkit_mol(data, i), [as_rdkit_mol(data, i)]) for i in rows[:3]]


def test_baseline_end_to_end_on_qm9(qm9_three):
    result = etkdg_baseline(qm9_three, seed=0, num_workers=0, progress=False)
    assert len(result["per_molecule"]) == 3
    assert result["seconds"] > 0 and result["summary"]["num_failed_molecules"] == 0
    assert set(INFO_KEYS) <= set(result["failures"])
    assert "cov_r@0.1_mean" in result["summary"] and "amr_r_median" in result["summary"]
    for (graph, refs), gen, metrics in zip(
        qm9_three, result["generated"], result["per_molecule"], strict=True
    ):
        assert len(gen) == 2 * len(refs)
        # the per-molecule result is reproducible alone and scores like a direct call
        np.testing.assert_array_equal(_coords(gen), _coords(etkdg_conformers(graph, 2, seed=0)))
        direct = conformer_metrics(gen, refs)
        for k, v in direct.items():
            assert metrics[k] == pytest.approx(v, abs=1e-9)
        assert 0.0 < metrics["amr_r"] < 1.5  # ETKDG+MMFF lands near the DFT geometry
    assert qm9_three[0][0].GetNumConformers() == 1  # graph Mols are not modified


def test_baseline_counts_a_failed_molecule_as_uncovered(qm9_three, monkeypatch):
    real = rdDistGeom.EmbedMultipleConfs
    first = qm9_three[0][0].GetNumAtoms()

    def fail_first(mol, num, params):
        return [] if mol.GetNumAtoms() == first else real(mol, num, params)

    monkeypatch.setattr(rdDistGeom, "EmbedMultipleConfs", fail_first)
    if any(g.GetNumAtoms() == first for g, _ in qm9_three[1:]):
        pytest.skip("two of the molecules have the same size")
    with pytest.warns(RuntimeWarning, match="molecule 0"):
        result = etkdg_baseline(qm9_three, num_workers=0, progress=False)
    bad = result["per_molecule"][0]
    assert bad["cov_r@0.5"] == 0.0 and np.isnan(bad["amr_r"])
    assert result["summary"]["num_failed_molecules"] == 1
    assert result["failures"]["embed_failures"] == 2
    good = [d["amr_r"] for d in result["per_molecule"][1:]]
    assert result["summary"]["amr_r_mean"] == pytest.approx(np.mean(good))
    assert result["summary"]["cov_r@0.5_mean"] == pytest.approx(
        np.mean([d["cov_r@0.5"] for d in result["per_molecule"]])
    )


def test_parallel_generation_matches_serial(qm9_three):
    serial = etkdg_baseline(qm9_three[:2], num_workers=0, progress=False)
    parallel = etkdg_baseline(qm9_three[:2], num_workers=2, eval_workers=0, progress=False)
    for a, b in zip(serial["generated"], parallel["generated"], strict=True):
        np.testing.assert_array_equal(_coords(a), _coords(b))
    assert serial["per_molecule"] == parallel["per_molecule"]


def test_stereo_graph_scores_against_stereo_free_references():
    """An E-imine graph (its N-H defines the stereo) against a reference without stereo.

    `Chem.RemoveHs` keeps that hydrogen only on the stereo-annotated Mol; the baseline must
    still score the pair (the reference's coordinates are those of the E isomer).
    """
    graph = _mol("C/C=N/[H]")
    ref = etkdg_conformers(graph, 1, seed=9)[0]
    Chem.RemoveStereochemistry(ref)
    assert Chem.MolToSmiles(Chem.RemoveHs(ref)) != Chem.MolToSmiles(Chem.RemoveHs(graph))
    result = etkdg_baseline([(graph, [ref])], num_workers=0, progress=False)
    assert result["per_molecule"][0]["cov_r@0.1"] == 1.0  # same isomer, rigid molecule
