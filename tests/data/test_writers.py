"""Molecule files: SDF, XYZ and npz round trips, checked with RDKit's own readers."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest
from rdkit import Chem

from symdiff_jax.data import writers
from symdiff_jax.data.writers import (
    load_samples_npz,
    molecules_to_rdkit,
    read_xyz,
    write_samples_npz,
    write_sdf,
    write_xyz,
)

# Real geometries (Angstrom) with known chemistry: bond orders any chemist would draw.
WATER = ([8, 1, 1], [[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]])
ETHENE = (
    [6, 6, 1, 1, 1, 1],
    [[0.0, 0.0, 0.6695], [0.0, 0.0, -0.6695], [0.0, 0.9289, 1.2321],
     [0.0, -0.9289, 1.2321], [0.0, 0.9289, -1.2321], [0.0, -0.9289, -1.2321]],
)  # fmt: skip
HCN = ([1, 6, 7], [[0.0, 0.0, -1.6644], [0.0, 0.0, -0.5985], [0.0, 0.0, 0.5600]])
KNOWN_BONDS = {  # molecule -> {(i, j): order}
    "water": {(0, 1): 1, (0, 2): 1},
    "ethene": {(0, 1): 2, (0, 2): 1, (0, 3): 1, (1, 4): 1, (1, 5): 1},
    "hcn": {(0, 1): 1, (1, 2): 3},
}


def padded_batch(mols, width=8, seed=0):
    """Pads molecules into [B, width, 3] / [B, width]; padded slots get random junk."""
    rng = np.random.RandomState(seed)
    x = rng.randn(len(mols), width, 3) * 50  # junk in padded rows must be ignored
    z = np.zeros((len(mols), width), np.int64)
    mask = np.zeros((len(mols), width), np.float32)
    for b, (zs, xyz) in enumerate(mols):
        n = len(zs)
        x[b, :n] = np.reshape(xyz, (n, 3))
        z[b, :n] = zs
        mask[b, :n] = 1
    return x, z, mask


def mixed_batch():
    """Known molecules, an unsanitisable one (5 close carbons), an empty and a 1-atom one."""
    rng = np.random.RandomState(3)
    clump = ([6] * 5, (rng.randn(5, 3) * 0.6).tolist())
    return padded_batch([WATER, ETHENE, HCN, clump, ([], []), ([7], [[1.0, 2.0, 3.0]])])


def test_sdf_roundtrip_coordinates_elements_and_names(tmp_path):
    x, z, mask = mixed_batch()
    names = [f"s{i}" for i in range(len(x))]
    path = tmp_path / "out" / "samples.sdf"
    assert write_sdf(path, x, z, mask, names=names) == len(x)
    back = list(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False))
    assert len(back) == len(x) and all(mol is not None for mol in back)
    for b, mol in enumerate(back):
        keep = np.flatnonzero(mask[b])
        assert [a.GetAtomicNum() for a in mol.GetAtoms()] == z[b, keep].tolist()
        if len(keep):
            got = mol.GetConformer().GetPositions()
            np.testing.assert_allclose(got, x[b, keep], rtol=0, atol=1e-4)
        assert mol.GetProp("_Name") == names[b]
        assert mol.GetIntProp("sample_index") == b
    assert [m.GetIntProp("sanitized") for m in back] == [1, 1, 1, 0, 1, 1]


def test_sdf_bonds_are_the_chemistry(tmp_path):
    x, z, mask = padded_batch([WATER, ETHENE, HCN])
    path = tmp_path / "known.sdf"
    write_sdf(path, x, z, mask)
    back = list(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False))
    for mol, name in zip(back, ("water", "ethene", "hcn"), strict=True):
        got = {
            tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))): int(b.GetBondTypeAsDouble())
            for b in mol.GetBonds()
        }
        assert got == KNOWN_BONDS[name], name
    # limit_bonds_to_one makes every bond single (EDM's GEOM setting)
    write_sdf(path, x, z, mask, limit_bonds_to_one=True)
    back = list(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False))
    assert {b.GetBondTypeAsDouble() for m in back for b in m.GetBonds()} == {1.0}


def test_molecules_to_rdkit_keeps_invalid_molecules_with_conformers():
    x, z, mask = mixed_batch()
    mols = molecules_to_rdkit(x, z, mask)
    assert len(mols) == len(x)
    assert [m.GetBoolProp("sanitized") for m in mols] == [True, True, True, False, True, True]
    assert [m.GetNumAtoms() for m in mols] == [3, 6, 3, 5, 0, 1]
    clump = mols[3]
    np.testing.assert_allclose(clump.GetConformer().GetPositions(), x[3, :5], rtol=0, atol=1e-12)
    assert clump.GetConformer().Is3D()
    assert Chem.MolToSmiles(mols[1]) == Chem.MolToSmiles(Chem.AddHs(Chem.MolFromSmiles("C=C")))
    # JAX inputs (float32) give the same molecules
    from_jax = molecules_to_rdkit(jnp.asarray(x), jnp.asarray(z), jnp.asarray(mask))
    assert [Chem.MolToSmiles(m) for m in from_jax] == [Chem.MolToSmiles(m) for m in mols]
    np.testing.assert_allclose(
        from_jax[3].GetConformer().GetPositions(), x[3, :5], rtol=0, atol=1e-6
    )


def test_single_molecule_and_default_mask(tmp_path):
    zs, xyz = ETHENE
    path = tmp_path / "one.sdf"
    assert write_sdf(path, np.array(xyz), np.array(zs)) == 1
    mol = next(iter(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False)))
    assert mol.GetProp("_Name") == "molecule_00000" and mol.GetNumAtoms() == 6


def test_xyz_directory_one_file_per_molecule_read_by_rdkit(tmp_path):
    x, z, mask = mixed_batch()
    paths = write_xyz(tmp_path / "xyz", x, z, mask)
    assert [os.path.basename(p) for p in paths] == [f"molecule_{i:05d}.xyz" for i in range(6)]
    for b, p in enumerate(paths):
        text = open(p).read()
        lines = text.splitlines()
        keep = np.flatnonzero(mask[b])
        assert int(lines[0]) == len(keep) and lines[1] == f"molecule_{b:05d}"
        assert len(lines) == 2 + len(keep)
        if len(keep):  # RDKit's XYZ reader is an independent parser of the format
            mol = Chem.MolFromXYZBlock(text)
            assert [a.GetAtomicNum() for a in mol.GetAtoms()] == z[b, keep].tolist()
            np.testing.assert_allclose(mol.GetConformer().GetPositions(), x[b, keep], atol=1e-7)


def test_xyz_multiframe_file_roundtrip(tmp_path):
    x, z, mask = mixed_batch()
    [path] = write_xyz(tmp_path / "all.xyz", x, z, mask, names=list("abcdef"))
    back = read_xyz(path)
    assert back["comments"] == list("abcdef")
    width = back["mask"].shape[1]
    assert width == int(mask.sum(1).max())
    np.testing.assert_array_equal(back["mask"], mask[:, :width] > 0)
    np.testing.assert_array_equal(back["atomic_numbers"], z[:, :width] * (mask[:, :width] > 0))
    m = back["mask"]
    np.testing.assert_allclose(back["positions"][m], x[:, :width][m], rtol=0, atol=1e-7)
    assert not back["positions"][~m].any()
    # the directory form reads back the same
    write_xyz(tmp_path / "dir", x, z, mask)
    again = read_xyz(tmp_path / "dir")
    np.testing.assert_array_equal(again["atomic_numbers"], back["atomic_numbers"])
    np.testing.assert_allclose(again["positions"], back["positions"])


def test_read_xyz_errors(tmp_path):
    bad = tmp_path / "bad.xyz"
    bad.write_text("3\ncomment\nC 0 0 0\nXx 1 0 0\nH 0 1 0\n")
    with pytest.raises(ValueError, match=r"line 4: unknown element symbol 'Xx'"):
        read_xyz(bad)
    bad.write_text("1\ncomment\n* 0 0 0\n")
    with pytest.raises(ValueError, match=r"line 3: unknown element symbol '\*'"):
        read_xyz(bad)
    bad.write_text("2\ncomment\ncl 0 0 0\nBR 1 1 1\n")  # case-insensitive symbols
    assert read_xyz(bad)["atomic_numbers"].tolist() == [[17, 35]]
    bad.write_text("5\ncomment\nC 0 0 0\n")
    with pytest.raises(ValueError, match="announces 5 atoms"):
        read_xyz(bad)
    with pytest.raises(FileNotFoundError):
        read_xyz(tmp_path / "missing.xyz")


def test_npz_roundtrip_with_extras(tmp_path):
    x, z, mask = mixed_batch()
    x = x.astype(np.float32)
    stable = np.array([True, True, True, False, True, False])
    path = write_samples_npz(tmp_path / "s.npz", x, z, mask, seed=3, stable=stable, tag="run-a")
    data = load_samples_npz(path)
    np.testing.assert_array_equal(data["positions"], x)
    assert data["positions"].dtype == np.float32
    np.testing.assert_array_equal(data["atomic_numbers"], z * (mask > 0))
    np.testing.assert_array_equal(data["mask"], mask > 0)
    np.testing.assert_array_equal(data["stable"], stable)
    assert int(data["seed"]) == 3 and str(data["tag"]) == "run-a"
    assert sorted(os.listdir(tmp_path)) == ["s.npz"]  # no temporary file left behind


def test_npz_refuses_object_arrays_and_foreign_files(tmp_path):
    x, z, mask = mixed_batch()
    with pytest.raises(ValueError, match="dtype object"):
        write_samples_npz(tmp_path / "a.npz", x, z, mask, ragged=np.array([[1], [1, 2]], object))
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="not a samples file"):
        np.savez(tmp_path / "other.npz", a=np.zeros(2))
        load_samples_npz(tmp_path / "other.npz")


def test_writes_are_atomic(tmp_path, monkeypatch):
    """A failure during the rename leaves the old file intact and no temporary file."""
    x, z, mask = padded_batch([WATER])
    path = tmp_path / "keep.sdf"
    path.write_text("old contents")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(writers.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_sdf(path, x, z, mask)
    with pytest.raises(OSError, match="disk full"):
        write_samples_npz(tmp_path / "s.npz", x, z, mask)
    assert path.read_text() == "old contents"
    assert sorted(os.listdir(tmp_path)) == ["keep.sdf"]


def test_bad_inputs_are_rejected_with_names(tmp_path):
    x, z, mask = padded_batch([WATER, ETHENE])
    z_bad = z.copy()
    z_bad[1, 3] = 2  # helium: not in the bond tables
    for call in (
        lambda: write_sdf(tmp_path / "a.sdf", x, z_bad, mask),
        lambda: write_xyz(tmp_path / "a.xyz", x, z_bad, mask),
        lambda: write_samples_npz(tmp_path / "a.npz", x, z_bad, mask),
        lambda: molecules_to_rdkit(x, z_bad, mask),
    ):
        with pytest.raises(ValueError, match=r"molecule 1, atom 3 has atomic number 2"):
            call()
    with pytest.raises(ValueError, match=r"positions must have shape \[B, N, 3\]"):
        write_sdf(tmp_path / "a.sdf", x[..., :2], z, mask)
    with pytest.raises(ValueError, match="atomic_numbers must have shape"):
        write_xyz(tmp_path / "a.xyz", x, z[:, :3], mask)
    with pytest.raises(ValueError, match="mask must have shape"):
        write_samples_npz(tmp_path / "a.npz", x, z, mask[:1])
    with pytest.raises(ValueError, match="one name per molecule"):
        write_sdf(tmp_path / "a.sdf", x, z, mask, names=["only-one"])
    with pytest.raises(ValueError, match="distinct"):
        write_xyz(tmp_path / "d", x, z, mask, names=["same", "same"])
    assert not any(p.suffix in (".sdf", ".xyz", ".npz") for p in tmp_path.iterdir())
