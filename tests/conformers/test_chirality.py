"""Tests for symdiff_jax.conformers.chirality (tags, signed volumes, parity correction).

References are independent of the code under test: RDKit's own stereo perception
(`AssignStereochemistryFrom3D`, CIP labels from `FindMolChiralCenters`) and NumPy float64
determinants.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.conformers import chirality as ch

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import rdDistGeom  # noqa: E402

CHIRAL_SMILES = {
    "L-alanine": "N[C@@H](C)C(=O)O",
    "(S)-lactic acid": "C[C@H](O)C(=O)O",
    "L-threonine": "C[C@@H](O)[C@H](N)C(=O)O",
}
RDKIT_SIGN = {"CHI_TETRAHEDRAL_CCW": 1, "CHI_TETRAHEDRAL_CW": -1}


def _embed(smiles, num, seed=7):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, num, params))
    assert len(ids) == num
    x = np.stack([mol.GetConformer(i).GetPositions() for i in ids])  # [K, n, 3]
    return mol, x


def _cip(mol, x):
    """CIP labels RDKit perceives from coordinates x (on a copy of mol)."""
    m = Chem.Mol(mol)
    m.RemoveAllConformers()
    conf = Chem.Conformer(m.GetNumAtoms())
    for i, p in enumerate(np.asarray(x, np.float64)):
        conf.SetAtomPosition(i, p.tolist())
    m.AddConformer(conf, assignId=True)
    Chem.AssignStereochemistryFrom3D(m)
    return Chem.FindMolChiralCenters(m, includeUnassigned=True, useLegacyImplementation=False)


def _raw_tags(mol):
    """RDKit's tags in its own (bond) order, without any conversion."""
    return np.array([RDKIT_SIGN.get(str(a.GetChiralTag()), 0) for a in mol.GetAtoms()])


def test_signed_volumes_match_numpy_determinant(x64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 9, 3))
    centres = np.array([0, 4, 8])
    neighbours = np.array([[1, 2, 3, 5], [3, 0, 7, -1], [2, 6, 1, 0]])
    got = np.asarray(ch.signed_volumes(x, centres, neighbours))
    want = np.empty((5, 3))
    for b in range(5):
        for k, (c, nb) in enumerate(zip(centres, neighbours, strict=True)):
            want[b, k] = np.linalg.det(x[b, nb[:3]] - x[b, c])  # rows a, b, c
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_qm9_stereocentres_agree_with_rdkit_assignment_from_3d():
    """RDKit tags on rebuilt QM9 molecules (bonds added in ascending order) = our volumes."""
    pytest.importorskip("qm9pack", reason="qm9_conformers needs the qm9pack wheel")
    from symdiff_jax.conformers.qm9_conformers import as_rdkit_mol, load_qm9_conformers

    data = load_qm9_conformers("test", max_molecules=300)
    checked = 0
    for i in range(len(data["num_atoms"])):
        mol = as_rdkit_mol(data, i, stereo_from_3d=True)
        tags = _raw_tags(mol)
        if not tags.any():
            continue
        for c in np.nonzero(tags)[0]:  # RDKit's bond order is ascending for these Mols
            order = [b.GetOtherAtomIdx(int(c)) for b in mol.GetAtomWithIdx(int(c)).GetBonds()]
            assert order == sorted(order)
        n = mol.GetNumAtoms()
        centres, neighbours, signs = ch.chiral_centres(tags, data["bond_types"][i, :n, :n])
        vol = np.asarray(ch.signed_volumes(mol.GetConformer().GetPositions(), centres, neighbours))
        np.testing.assert_array_equal(np.sign(vol), signs, err_msg=f"molecule {i}")
        np.testing.assert_array_equal(ch.chiral_tags_ascending(mol), tags)
        checked += len(centres)
    assert checked > 100  # the split has ~200 stereocentres in its first 300 molecules


@pytest.mark.parametrize("name", sorted(CHIRAL_SMILES))
def test_etkdg_conformers_have_the_tagged_handedness(name):
    mol, x = _embed(CHIRAL_SMILES[name], 4)
    centres, neighbours, signs = ch.chiral_centres_from_mol(mol)
    assert len(centres) == (2 if name == "L-threonine" else 1)
    vol = np.asarray(ch.signed_volumes(x, centres, neighbours))  # [K, C]
    np.testing.assert_array_equal(np.sign(vol), np.broadcast_to(signs, vol.shape))
    agree, disagree = ch.parity_votes(x, centres, neighbours, signs)
    np.testing.assert_array_equal(agree, len(centres))
    np.testing.assert_array_equal(disagree, 0)


def test_tags_follow_atom_renumbering():
    """Renumbered atoms keep RDKit's bond order, so only the parity conversion stays right."""
    mol, x = _embed(CHIRAL_SMILES["L-threonine"], 1)
    rng = np.random.default_rng(1)
    raw_wrong = 0
    for _ in range(8):
        perm = rng.permutation(mol.GetNumAtoms()).tolist()
        renum = Chem.RenumberAtoms(mol, perm)
        xr = x[0][perm]
        centres, neighbours, signs = ch.chiral_centres_from_mol(renum)
        vol = np.asarray(ch.signed_volumes(xr, centres, neighbours))
        np.testing.assert_array_equal(np.sign(vol), signs)
        raw = _raw_tags(renum)[centres]
        raw_wrong += int(np.any(raw != signs))
    assert raw_wrong > 0  # the conversion mattered for some of the permutations


def _padded_batch():
    """Conformers of three chiral molecules, padded; every other one mirrored."""
    mols, xs, items = [], [], []
    for name in sorted(CHIRAL_SMILES):
        mol, x = _embed(CHIRAL_SMILES[name], 2, seed=3)
        for k in range(2):
            mols.append(mol)
            xs.append(x[k] if k == 0 else x[k] * np.array([-1.0, 1.0, 1.0]))
            items.append(ch.chiral_centres_from_mol(mol))
    n_max = max(len(x) for x in xs)
    big = np.zeros((len(xs), n_max, 3))
    for b, x in enumerate(xs):
        big[b, : len(x)] = x
    return mols, big, ch.pad_chiral_centres(items)


def test_mirrored_conformers_are_corrected_back_cip():
    mols, x, (centres, neighbours, signs, mask) = _padded_batch()
    x = x.astype(np.float32)
    out = np.asarray(jax.jit(ch.parity_correct)(x, centres, neighbours, signs, mask))
    for b, mol in enumerate(mols):
        n = mol.GetNumAtoms()
        want = Chem.FindMolChiralCenters(mol, useLegacyImplementation=False)
        mirrored = b % 2 == 1
        assert (_cip(mol, x[b, :n]) == want) != mirrored  # the batch is what we think
        assert _cip(mol, out[b, :n]) == want
        if not mirrored:
            np.testing.assert_array_equal(out[b], x[b])
        np.testing.assert_array_equal(out[b, n:], 0.0)  # padding stays zero


def test_reflection_is_an_improper_orthogonal_map():
    """Any reflection (here x -> -x and a mirror plane) flips every signed volume."""
    mol, x = _embed(CHIRAL_SMILES["L-threonine"], 3)
    centres, neighbours, signs = ch.chiral_centres_from_mol(mol)
    mirror = x * np.array([-1.0, 1.0, 1.0])
    for bad in (-x, mirror):
        np.testing.assert_array_equal(ch.needs_reflection(bad, centres, neighbours, signs), True)
        fixed = np.asarray(ch.parity_correct(bad, centres, neighbours, signs))
        vol = np.asarray(ch.signed_volumes(fixed, centres, neighbours))
        np.testing.assert_array_equal(np.sign(vol), np.broadcast_to(signs, vol.shape))


@pytest.mark.parametrize("smiles", ["CCO", "c1ccccc1", "CC(C)(C)C"])
def test_molecules_without_centres_are_unchanged(smiles):
    mol, x = _embed(smiles, 3)
    x = x.astype(np.float32)
    centres, neighbours, signs = ch.chiral_centres_from_mol(mol)
    assert len(centres) == 0
    c, nb, s, m = ch.pad_chiral_centres([(centres, neighbours, signs)] * 3)
    assert c.shape == (3, 1) and not m.any()
    for y in (x, -x):
        np.testing.assert_array_equal(np.asarray(ch.parity_correct(y, c, nb, s, m)), y)
    # a padded slot that would vote (sign set) still does nothing while masked
    s_live = np.ones_like(s)
    y = -x
    np.testing.assert_array_equal(np.asarray(ch.parity_correct(y, c, nb, s_live, m)), y)


def test_majority_vote_and_ties():
    """Three centres: flip when 2 or 3 are wrong, keep when 0 or 1 are; ties keep."""
    mol, x = _embed("C[C@@H](O)[C@H](N)[C@@H](C)F", 1)
    centres, neighbours, signs = ch.chiral_centres_from_mol(mol)
    assert len(centres) == 3
    for wrong in range(4):
        s = signs.copy()
        s[:wrong] *= -1  # the tags of a diastereomer with `wrong` inverted centres
        flip = bool(ch.needs_reflection(x[0], centres, neighbours, s))
        assert flip == (wrong >= 2), wrong
    # two centres, one of them wrong: a tie, no reflection
    s = signs[:2].copy()
    s[0] *= -1
    assert not bool(ch.needs_reflection(x[0], centres[:2], neighbours[:2], s))
    # a masked centre does not vote: with it masked, one wrong of two is again a tie
    s = signs.copy()
    s[:2] *= -1
    mask = np.array([1.0, 0.0, 1.0])
    assert bool(ch.needs_reflection(x[0], centres, neighbours, s))
    assert not bool(ch.needs_reflection(x[0], centres, neighbours, s, mask))


def test_jit_vmap_and_dtypes():
    _, x, (centres, neighbours, signs, mask) = _padded_batch()
    x32 = jnp.asarray(x, jnp.float32)
    eager = ch.parity_correct(x32, centres, neighbours, signs, mask)
    jitted = jax.jit(ch.parity_correct)(x32, centres, neighbours, signs, mask)
    mapped = jax.vmap(ch.parity_correct)(x32, centres, neighbours, signs, mask)
    assert eager.dtype == jnp.float32
    np.testing.assert_array_equal(eager, jitted)
    np.testing.assert_array_equal(eager, mapped)


def test_padding_layout():
    items = [
        (np.array([2]), np.array([[0, 1, 3, 4]]), np.array([1])),
        (np.array([1, 5]), np.array([[0, 2, 3], [4, 6, 7]]), np.array([-1, 1])),
        (np.zeros(0, int), np.zeros((0, 4), int), np.zeros(0, int)),
    ]
    c, nb, s, m = ch.pad_chiral_centres(items, max_centres=3)
    np.testing.assert_array_equal(c, [[2, 0, 0], [1, 5, 0], [0, 0, 0]])
    np.testing.assert_array_equal(s, [[1, 0, 0], [-1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(m, [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(nb[1, :2], [[0, 2, 3, -1], [4, 6, 7, -1]])
    with pytest.raises(ValueError, match="more than max_centres=1"):
        ch.pad_chiral_centres(items, max_centres=1)


@pytest.mark.parametrize("smiles", ["C[N@]1C[C@H]1C", *CHIRAL_SMILES.values()])
def test_three_neighbour_centres_use_rdkit_convention(smiles):
    """Centres with an implicit H (heavy-atom Mols) and a ring N: tags agree with volumes.

    The tags are RDKit's from the SMILES (the aziridine N keeps its tag there) and, for the
    carbons, RDKit's reassignment from the 3D heavy-atom coordinates.
    """
    mol, x = _embed(smiles, 1)
    heavy = Chem.RemoveHs(mol)  # heavy atoms come first, so x[0, :n] are theirs
    n = heavy.GetNumAtoms()
    centres, neighbours, signs = ch.chiral_centres_from_mol(heavy)
    assert len(centres) and np.all(neighbours[:, 3] == ch.MISSING_NEIGHBOUR)
    vol = np.asarray(ch.signed_volumes(x[0, :n], centres, neighbours))
    np.testing.assert_array_equal(np.sign(vol), signs)
    from_3d = Chem.Mol(heavy)
    Chem.AssignStereochemistryFrom3D(from_3d)
    tags = ch.chiral_tags_ascending(from_3d)
    carbons = [k for k, c in enumerate(centres) if heavy.GetAtomWithIdx(int(c)).GetSymbol() == "C"]
    np.testing.assert_array_equal(tags[centres[carbons]], signs[carbons])


def test_input_errors():
    bonds = np.zeros((4, 4), int)
    bonds[0, 1] = bonds[1, 0] = bonds[1, 2] = bonds[2, 1] = 1
    with pytest.raises(ValueError, match="2 bonded neighbours"):
        ch.chiral_centres(np.array([0, 1, 0, 0]), bonds)
    with pytest.raises(ValueError, match="must be \\+1"):
        ch.chiral_centres(np.array([0, 2, 0, 0]), bonds)
    asym = bonds.copy()
    asym[0, 3] = 1
    with pytest.raises(ValueError, match="symmetric"):
        ch.chiral_centres(np.zeros(4, int), asym)
    with pytest.raises(ValueError, match=r"\[N, N\]"):
        ch.chiral_centres(np.zeros(3, int), bonds)
    with pytest.raises(ValueError, match=r"\[\.\.\., N, 3\]"):
        ch.signed_volumes(np.zeros((4, 2)), np.array([1]), np.array([[0, 2, 3, -1]]))
    with pytest.raises(ValueError, match="neighbours must be"):
        ch.signed_volumes(np.zeros((4, 3)), np.array([1]), np.array([[0, 2]]))
