"""qm9_conformers: the SMILES graph mapped onto QM9's atom order, on real QM9 molecules."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds

pytest.importorskip("qm9pack")

from symdiff_jax.conformers import qm9_conformers as conformers  # noqa: E402
from symdiff_jax.conformers.qm9_conformers import (  # noqa: E402
    SKIP_REASONS,
    as_rdkit_mol,
    bond_orders,
    load_qm9_conformers,
    map_smiles_to_geometry,
)
from symdiff_jax.data.qm9 import load_qm9  # noqa: E402

NUM = 150

# Typical bond lengths (Angstrom) of the QM9 elements by bond order, with a wide margin:
# a wrong atom mapping puts graph bonds between atoms that are >= 2 A apart.
_LIMITS = {1.0: (0.93, 1.62), 1.5: (1.28, 1.50), 2.0: (1.15, 1.38), 3.0: (1.12, 1.22)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_qm9_conformers("test", max_molecules=NUM, cache_dir=tmp_path_factory.mktemp("c"))


def _canonical(smiles_or_mol) -> str:
    mol = Chem.MolFromSmiles(smiles_or_mol) if isinstance(smiles_or_mol, str) else smiles_or_mol
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)


def test_mapping_respects_elements_and_geometry(data):
    """For the first 150 test molecules: the rebuilt Mol has QM9's elements in QM9's order and
    the GDB SMILES's graph; every bond has a plausible length for its order in the DFT
    geometry; every hydrogen is bonded to its nearest atom; the conformer is the geometry."""
    qm9 = load_qm9("test")
    assert len(data["index"]) + data["num_skipped"] == NUM
    assert data["positions"].shape == (len(data["index"]), 29, 3)
    for i in range(len(data["index"])):
        row = int(data["split_position"][i])
        n = int(data["num_atoms"][i])
        assert data["index"][i] == qm9["index"][row]
        np.testing.assert_array_equal(data["charges"][i], qm9["charges"][row])
        mol = as_rdkit_mol(data, i)
        assert [a.GetAtomicNum() for a in mol.GetAtoms()] == qm9["charges"][row, :n].tolist()
        assert _canonical(mol) == _canonical(str(data["smiles"][i]))
        x = qm9["positions"][row, :n].astype(np.float64)
        np.testing.assert_allclose(mol.GetConformer().GetPositions(), x, atol=1e-6)
        dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
        for b in mol.GetBonds():
            a, c = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            lo, hi = _LIMITS[b.GetBondTypeAsDouble()]
            assert lo < dist[a, c] < hi, (data["smiles"][i], a, c, dist[a, c])
        np.fill_diagonal(dist, np.inf)
        for atom in mol.GetAtoms():
            if atom.GetAtomicNum() == 1:
                (nb,) = atom.GetNeighbors()
                assert nb.GetIdx() == int(np.argmin(dist[atom.GetIdx()]))
    orders = bond_orders(data)
    assert set(np.unique(orders).tolist()) <= {0.0, 1.0, 1.5, 2.0, 3.0}
    np.testing.assert_array_equal(orders, np.swapaxes(orders, -1, -2))


def test_cage_molecule_with_extra_contacts_is_mapped(data):
    """A cage molecule whose DFT geometry has short non-bonded contacts (RDKit's
    connectivity perception finds more bonds than the SMILES has) is still mapped, onto
    the SMILES graph."""
    qm9 = load_qm9("test")
    found = 0
    for i in range(len(data["index"])):
        row = int(data["split_position"][i])
        n = int(qm9["num_atoms"][row])
        xyz = Chem.RWMol()
        for z in qm9["charges"][row, :n]:
            xyz.AddAtom(Chem.Atom(int(z)))
        conf = Chem.Conformer(n)
        for k, p in enumerate(qm9["positions"][row, :n].astype(float)):
            conf.SetAtomPosition(k, p.tolist())
        m = xyz.GetMol()
        m.AddConformer(conf)
        rdDetermineBonds.DetermineConnectivity(m)
        template = Chem.AddHs(Chem.MolFromSmiles(str(data["smiles"][i])))
        if m.GetNumBonds() > template.GetNumBonds():
            found += 1
            assert int((data["bond_types"][i] > 0).sum()) // 2 == template.GetNumBonds()
    assert found >= 1


def test_map_smiles_to_geometry_reasons():
    """Failures are reported with their reason: unparsable SMILES, another formula, and a
    geometry with a bond stretched to 3 A (no element-respecting match)."""
    qm9 = load_qm9("test")
    n = int(qm9["num_atoms"][1])  # ethanol
    z, x = qm9["charges"][1, :n], qm9["positions"][1, :n].astype(np.float64)
    mol, reason = map_smiles_to_geometry("CCO", z, x)
    assert reason is None and mol.GetNumAtoms() == n
    assert map_smiles_to_geometry("C1CC", z, x) == (None, "smiles_parse_failed")
    assert map_smiles_to_geometry("CCN", z, x) == (None, "formula_mismatch")
    o = int(np.flatnonzero(z == 8)[0])
    stretched = x.copy()
    stretched[o] += 3.0 * (x[o] - x[z == 6].mean(0)) / np.linalg.norm(x[o] - x[z == 6].mean(0))
    assert map_smiles_to_geometry("CCO", z, stretched) == (None, "no_match")


def _check_mapped(mol, z, x, smiles):
    """Elements in the geometry's order, the SMILES graph, plausible bond lengths."""
    assert [a.GetAtomicNum() for a in mol.GetAtoms()] == list(z)
    assert _canonical(mol) == _canonical(smiles)
    for b in mol.GetBonds():
        a, c = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        lo, hi = _LIMITS[b.GetBondTypeAsDouble()]
        assert lo < np.linalg.norm(x[a] - x[c]) < hi, (smiles, a, c)


def test_mapping_of_shuffled_geometries():
    """The atoms of 40 QM9 geometries listed in a random order (fixed seed): the mapping
    follows the new order (elements, graph, bond lengths all agree)."""
    qm9 = load_qm9("test")
    rng = np.random.default_rng(0)
    for s in range(40):
        n = int(qm9["num_atoms"][s])
        perm = rng.permutation(n)
        z = qm9["charges"][s, :n][perm]
        x = qm9["positions"][s, :n][perm].astype(np.float64)
        mol, reason = map_smiles_to_geometry(str(qm9["smiles"][s]), z, x)
        assert reason is None
        _check_mapped(mol, z.tolist(), x, str(qm9["smiles"][s]))
        np.testing.assert_allclose(mol.GetConformer().GetPositions(), x)


def test_extra_contacts_resolved_by_shortest_bonds():
    """Azide drawn bent (N-N 1.18 A, N...N contact 1.81 A, within RDKit's 1.3 x covalent
    radii): the xyz graph is a triangle, the SMILES path embeds in it six ways, and the
    mapping keeps the one with the shortest bonds (the middle N is atom 1)."""
    theta, d = np.deg2rad(100.0), 1.18
    x = np.array([[0.0, 0, 0], [d, 0, 0], [d - d * np.cos(theta), d * np.sin(theta), 0]])
    mol, reason = map_smiles_to_geometry("[N-]=[N+]=[N-]", [7, 7, 7], x)
    assert reason is None
    assert [a.GetDegree() for a in mol.GetAtoms()] == [1, 2, 1]
    assert mol.GetAtomWithIdx(1).GetFormalCharge() == 1


def test_skips_are_counted(tmp_path, monkeypatch):
    """Molecules whose mapping fails are dropped and counted by reason, with their GDB index."""
    qm9 = load_qm9("test")
    small = {k: v[:6].copy() for k, v in qm9.items()}
    small["smiles"] = small["smiles"].astype(object)
    small["smiles"][2] = "C1CC"
    small["smiles"][4] = "CCCCCC"
    small["smiles"] = small["smiles"].astype(str)
    monkeypatch.setattr(conformers, "load_qm9", lambda *a, **k: small)
    out = load_qm9_conformers("test", cache_dir=tmp_path)
    assert out["skipped"] == {r: 0 for r in SKIP_REASONS} | {
        "smiles_parse_failed": 1,
        "formula_mismatch": 1,
    }
    assert out["num_skipped"] == 2
    np.testing.assert_array_equal(out["skipped_index"], small["index"][[2, 4]])
    np.testing.assert_array_equal(out["index"], small["index"][[0, 1, 3, 5]])


def test_cache_round_trip(tmp_path, monkeypatch):
    """The second call reads the npz cache (mapping disabled, same arrays), and a prefix
    (max_molecules) is sliced from a full cache identically to computing it directly."""
    qm9 = load_qm9("test")
    small = {k: v[:40] for k, v in qm9.items()}
    monkeypatch.setattr(conformers, "load_qm9", lambda *a, **k: small)
    first = load_qm9_conformers("test", cache_dir=tmp_path / "a")
    direct = load_qm9_conformers("test", max_molecules=25, cache_dir=tmp_path / "b")

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(conformers, "map_smiles_to_geometry", refuse)
    again = load_qm9_conformers("test", cache_dir=tmp_path / "a")
    prefix = load_qm9_conformers("test", max_molecules=25, cache_dir=tmp_path / "a")
    assert len(list((tmp_path / "a").glob("*.npz"))) == 1
    for ref, out in ((first, again), (direct, prefix)):
        assert ref.keys() == out.keys()
        for k in ref:
            if isinstance(ref[k], np.ndarray):
                np.testing.assert_array_equal(ref[k], out[k], err_msg=k)
            else:
                assert ref[k] == out[k]
