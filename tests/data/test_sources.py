"""Molecule sources: SDF / xyz directories, multi-molecule SDF, ASE databases, bad input.

Reference values come from RDKit itself (the molecules are embedded by RDKit and read back
with its own SDF reader) and from the files of an SDF that the RDKit wheel installs.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest
from rdkit import Chem, RDConfig
from rdkit.Chem import AllChem

from symdiff_jax.data import batch_iterator, size_histogram, write_xyz
from symdiff_jax.data.sources import (
    MoleculeSource,
    load_molecule_source,
    parse_elements,
    split_indices,
    split_sizes,
)

# Small neutral molecules of H, C, N, O, F (RDKit embeds them with a fixed seed).
SMILES = ("CCO", "C=O", "CC(=O)N", "c1ccccc1", "CF", "CCN", "OCC=O", "C#N", "NC=O")
#: The 47-ligand 3D SDF (hydrogens included) that the RDKit wheel installs.
SHIPPED_SDF = os.path.join(RDConfig.RDContribDir, "Fastcluster", "testdata", "cdk2.sdf")


@pytest.fixture(scope="module")
def mols():
    out = []
    for smi in SMILES:
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
        mol.SetProp("_Name", smi)
        out.append(mol)
    return out


def reference(mols):
    """Atomic numbers, positions and H-free canonical SMILES, straight from RDKit."""
    return [
        (
            [a.GetAtomicNum() for a in m.GetAtoms()],
            m.GetConformer().GetPositions(),
            Chem.MolToSmiles(Chem.RemoveHs(m)),
        )
        for m in mols
    ]


def padded(ref):
    """The reference molecules as a padded batch `(positions [B, N, 3], numbers [B, N])`."""
    width = max(len(z) for z, _, _ in ref)
    x = np.zeros((len(ref), width, 3))
    z = np.zeros((len(ref), width), np.int64)
    for i, (zi, xi, _) in enumerate(ref):
        x[i, : len(zi)], z[i, : len(zi)] = xi, zi
    return x, z


def write_sdf_dir(directory, mols):
    directory.mkdir(exist_ok=True)
    for i, m in enumerate(mols):
        Chem.MolToMolFile(m, str(directory / f"mol_{i:02d}.sdf"))
    return directory


def write_multi_sdf(path, mols):
    w = Chem.SDWriter(str(path))
    for m in mols:
        w.write(m)
    w.close()
    return path


def assert_matches(src: MoleculeSource, ref, atol=1e-4, smiles=True):
    data = src["all"]
    assert len(data["num_atoms"]) == len(ref)
    assert src.max_atoms == max(len(z) for z, _, _ in ref)
    assert src.atom_types == tuple(sorted({v for z, _, _ in ref for v in z}))
    assert data["positions"].shape == (len(ref), src.max_atoms, 3)
    for i, (z, x, smi) in enumerate(ref):
        n = len(z)
        assert data["num_atoms"][i] == n
        np.testing.assert_array_equal(data["charges"][i, :n], z)
        np.testing.assert_array_equal(data["charges"][i, n:], 0)
        np.testing.assert_allclose(data["positions"][i, :n], x, atol=atol)
        np.testing.assert_array_equal(data["positions"][i, n:], 0)
        if smiles:
            assert data["smiles"][i] == smi, i
    np.testing.assert_array_equal(data["index"], np.arange(len(ref)))


# ------------------------------------------------------------------------------ sources


def test_sdf_directory_matches_rdkit_and_splits(tmp_path, mols):
    src = load_molecule_source(write_sdf_dir(tmp_path / "sdf", mols))
    assert_matches(src, reference(mols))
    assert src.atom_types == (1, 6, 7, 8, 9) and src.skipped == ()
    # The seeded split: disjoint, covering every molecule, sizes as split_sizes says.
    parts = [src[s]["index"] for s in ("train", "valid", "test")]
    assert [len(p) for p in parts] == list(split_sizes(len(mols), (0.8, 0.1, 0.1)))
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(mols)))
    for name, idx in zip(("train", "valid", "test"), parts, strict=True):
        np.testing.assert_array_equal(src[name]["charges"], src["all"]["charges"][idx])
    # Same seed, same split; the split follows split_indices.
    again = load_molecule_source(tmp_path / "sdf", seed=0)
    np.testing.assert_array_equal(again["test"]["index"], src["test"]["index"])
    np.testing.assert_array_equal(src["valid"]["index"], split_indices(len(mols), seed=0)["valid"])


def test_multi_sdf_equals_directory(tmp_path, mols):
    one = load_molecule_source(write_multi_sdf(tmp_path / "all.sdf", mols), seed=3)
    assert_matches(one, reference(mols))
    many = load_molecule_source(write_sdf_dir(tmp_path / "sdf", mols), seed=3)
    for k in ("positions", "charges", "num_atoms", "smiles"):
        np.testing.assert_array_equal(one["train"][k], many["train"][k])


def test_xyz_directory_and_multiframe_file(tmp_path, mols):
    ref = reference(mols)
    x, z = padded(ref)
    write_xyz(tmp_path / "xyz", x, z)
    # rdDetermineBonds recovers the bonds of these neutral molecules from coordinates.
    assert_matches(load_molecule_source(tmp_path / "xyz"), ref, atol=1e-6)
    write_xyz(tmp_path / "frames.xyz", x, z)
    assert_matches(load_molecule_source(tmp_path / "frames.xyz"), ref, atol=1e-6)


def test_ase_database(tmp_path, mols):
    pytest.importorskip("ase")
    from symdiff_jax.data.ase_io import write_ase_db

    ref = reference(mols)
    x, z = padded(ref)
    assert write_ase_db(tmp_path / "mols.db", x, z) == len(ref)
    assert_matches(load_molecule_source(tmp_path / "mols.db"), ref, atol=1e-6)


def test_ase_database_without_ase_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "mols.db").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "ase", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ase\]"'):
        load_molecule_source(tmp_path / "mols.db")


def test_sdf_the_rdkit_wheel_installs():
    if not os.path.exists(SHIPPED_SDF):
        pytest.skip(f"this RDKit install lacks {SHIPPED_SDF}")
    supplier = Chem.SDMolSupplier(SHIPPED_SDF, removeHs=False)
    ref = [m for m in supplier]
    assert all(m is not None for m in ref)
    src = load_molecule_source(SHIPPED_SDF)
    assert_matches(src, reference(ref))
    assert len(ref) == 47 and src.skipped == ()
    # The size histogram and features are built as for QM9, over the source's classes.
    train = src["train"]
    np.testing.assert_array_equal(
        src.size_histogram(), size_histogram(train["num_atoms"], src.max_atoms)
    )
    batch = next(batch_iterator(train, 4, features=src.featurise))
    k = len(src.atom_types)
    assert batch["h"].shape == (4, src.max_atoms, k + 1)
    z = batch["charges"]
    one_hot = batch["h"][..., :k] * 4
    np.testing.assert_array_equal(one_hot.sum(-1), batch["mask"])
    np.testing.assert_array_equal(np.asarray(src.atom_types)[one_hot.argmax(-1)] * (z > 0), z)
    np.testing.assert_allclose(batch["h"][..., k], z / 10)


# ------------------------------------------------------------------------------ bad input


def corrupt_sdf_text(mols, bad_at):
    blocks = [Chem.MolToMolBlock(m) + "$$$$\n" for m in mols]
    blocks.insert(bad_at, "garbage\n  not a mol block\n\n  2  1  0\nM  END\n$$$$\n")
    return "".join(blocks)


def test_unparsable_record_is_skipped_with_its_index_and_a_count(tmp_path, mols):
    path = tmp_path / "some_bad.sdf"
    path.write_text(corrupt_sdf_text(mols, 4))
    with pytest.warns(UserWarning, match=r"skipped 1 of 10 records \(record 4 \(some_bad\.sdf"):
        src = load_molecule_source(path)
    assert [s.index for s in src.skipped] == [4]
    # Every good molecule survives, with its source index.
    np.testing.assert_array_equal(src["all"]["index"], [0, 1, 2, 3, 5, 6, 7, 8, 9])
    z4 = reference(mols)[4][0]
    np.testing.assert_array_equal(src["all"]["charges"][4, : len(z4)], z4)


def test_bad_file_in_directory_is_skipped_and_strict_fails(tmp_path, mols):
    d = write_sdf_dir(tmp_path / "mixed", mols)
    (d / "mol_03b.xyz").write_text("three\nnot a count\nC 0 0 0\n")
    with pytest.warns(UserWarning, match=r"skipped 1 of 10 records \(record 4 \(mol_03b\.xyz\)"):
        src = load_molecule_source(d)
    assert len(src["all"]["num_atoms"]) == len(mols)
    with pytest.raises(ValueError, match=r"record 4 \(mol_03b\.xyz\): unparsable xyz") as err:
        load_molecule_source(d, strict=True)
    assert "\n" not in str(err.value)


def test_strict_fails_on_unparsable_sdf_record(tmp_path, mols):
    path = tmp_path / "some_bad.sdf"
    path.write_text(corrupt_sdf_text(mols, 2))
    with pytest.raises(ValueError, match=r"record 2 \(some_bad\.sdf, record 2\).*data\.strict"):
        load_molecule_source(path, strict=True)


def test_unknown_element_when_elements_are_given(tmp_path, mols):
    d = write_sdf_dir(tmp_path / "sdf", mols)
    fluoro = SMILES.index("CF")
    with pytest.warns(UserWarning, match=rf"record {fluoro} .*element F is not in data\.elements"):
        src = load_molecule_source(d, elements="H,C,N,O")
    assert src.atom_types == (1, 6, 7, 8)
    assert fluoro not in src["all"]["index"] and len(src["all"]["index"]) == len(mols) - 1
    assert src.featurise(src["train"]["charges"]).shape[-1] == 5
    with pytest.raises(ValueError, match=rf"record {fluoro} .*element F"):
        load_molecule_source(d, elements=("H", "C", "N", "O"), strict=True)
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        load_molecule_source(d, elements="H,Xx")
    # A given set wider than the data is kept as the one-hot classes.
    assert load_molecule_source(d, elements=[1, 6, 7, 8, 9, 16]).atom_types[-1] == 16


def test_max_atoms_given(tmp_path, mols):
    d = write_sdf_dir(tmp_path / "sdf", mols)
    sizes = [m.GetNumAtoms() for m in mols]
    with pytest.warns(UserWarning, match=f"more than data.max_atoms = {max(sizes) - 1}"):
        src = load_molecule_source(d, max_atoms=max(sizes) - 1)
    assert src.max_atoms == max(sizes) - 1
    assert len(src["all"]["index"]) == sum(s < max(sizes) for s in sizes)
    assert load_molecule_source(d, max_atoms=40)["train"]["positions"].shape[1] == 40


def test_2d_record_is_skipped(tmp_path, mols):
    flat = Chem.MolFromSmiles("CCO")  # 2D depiction coordinates
    AllChem.Compute2DCoords(flat)
    path = write_multi_sdf(tmp_path / "with_2d.sdf", [*mols, flat])
    with pytest.warns(UserWarning, match=rf"record {len(mols)} .*no 3D coordinates"):
        src = load_molecule_source(path)
    assert len(src["all"]["index"]) == len(mols)


def test_empty_sources_are_one_line_errors(tmp_path, mols):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.*without .sdf") as err:
        load_molecule_source(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "empty.sdf").write_text("")
    with pytest.raises(ValueError, match=r"empty\.sdf' holds no molecules"):
        load_molecule_source(tmp_path / "empty.sdf")
    (tmp_path / "junk.sdf").write_text("junk\n$$$$\n")
    with pytest.raises(ValueError, match=r"junk\.sdf' has no usable molecules: all 1 records"):
        load_molecule_source(tmp_path / "junk.sdf")
    with pytest.raises(FileNotFoundError, match="nowhere.sdf' does not exist"):
        load_molecule_source(tmp_path / "nowhere.sdf")
    (tmp_path / "mols.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"suffix '\.csv'"):
        load_molecule_source(tmp_path / "mols.csv")


# ------------------------------------------------------------------------------ splits


def test_split_sizes_and_fractions():
    assert split_sizes(47, (0.8, 0.1, 0.1)) == (37, 5, 5)
    assert split_sizes(3, (0.8, 0.1, 0.1)) == (1, 1, 1)  # every split keeps a molecule
    assert split_sizes(5, (1.0, 0.0, 0.0)) == (5, 0, 0)
    with pytest.raises(ValueError, match="too few"):
        split_sizes(2, (0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="sum to 1"):
        split_sizes(10, (0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="train > 0"):
        split_sizes(10, (0.0, 0.5, 0.5))
    a, b = split_indices(100, seed=0), split_indices(100, seed=1)
    assert not np.array_equal(a["train"], b["train"])
    np.testing.assert_array_equal(np.sort(np.concatenate(list(a.values()))), np.arange(100))


def test_parse_elements():
    assert parse_elements("O, H,C") == (1, 6, 8)
    assert parse_elements([9, "n", "6"]) == (6, 7, 9)
    assert parse_elements("") is None and parse_elements(()) is None
    with pytest.raises(ValueError, match="atomic number 0"):
        parse_elements([0])


def test_no_warning_for_clean_sources(tmp_path, mols):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_molecule_source(write_sdf_dir(tmp_path / "sdf", mols))
