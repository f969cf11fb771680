"""QM9 loader: EDM's split, the three sources, the cache, and the error messages."""

from __future__ import annotations

import io
import tarfile
import time

import numpy as np
import pytest

from symdiff_jax.data import qm9
from symdiff_jax.data.gdb9_uncharacterised import uncharacterised_gdb9_indices
from symdiff_jax.data.qm9 import (
    MAX_ATOMS,
    edm_split_indices,
    load_qm9,
    parse_gdb9_xyz,
    split_of_gdb_index,
)

# EDM's train-split statistics (their configs/datasets_config.py, qm9_with_h): atom counts
# and the histogram of molecule sizes.
EDM_TRAIN_ATOM_COUNTS = {1: 923_537, 6: 635_559, 7: 101_476, 8: 140_202, 9: 2_323}
EDM_TRAIN_SIZE_COUNTS = {
    22: 3393, 17: 13025, 23: 4848, 21: 9970, 19: 13832, 20: 9482, 16: 10644, 13: 3060,
    15: 7796, 25: 1506, 18: 13364, 12: 1689, 11: 807, 24: 539, 14: 5136, 26: 48, 7: 16,
    10: 362, 8: 49, 9: 124, 27: 266, 4: 4, 29: 25, 6: 9, 5: 5, 3: 1,
}  # fmt: skip


# ------------------------------------------------------------------------------------------
# Files the tests write: GDB-9 xyz files in the figshare format.

METHANE = (
    1,
    ["C", "H", "H", "H", "H"],
    [
        [-0.0126981359, 1.0858041578, 0.0080009958],
        [0.002150416, -0.0060313176, 0.0019761204],
        [1.0117308433, 1.4637511618, 0.0002765748],
        [-0.540815069, 1.4475266138, -0.8766437152],
        [-0.5238136345, 1.4379326443, 0.9063972942],
    ],
    "C",
)
WATER = (3, ["O", "H", "H"], [[-0.0343604951, 0.9775395708, 0.0076015923],
                              [0.0647664923, 0.0205721989, 0.0015346341],
                              [0.8717903731, 1.3007509157, 0.0006931336]], "O")  # fmt: skip


def xyz_text(index, symbols, coords, smiles, star_exponent=False):
    """A GDB-9 xyz file: count, `gdb <index> <15 properties>`, atoms, freqs, SMILES, InChI."""
    props = "\t".join(["1.0"] * 15)
    lines = [str(len(symbols)), f"gdb {index}\t{props}\t"]
    for k, (s, (x, y, z)) in enumerate(zip(symbols, coords, strict=True)):
        xs = f"{x!r}"
        if star_exponent and k == 1:  # Mathematica exponent notation, as in the real files
            mant, exp = f"{x:.10e}".split("e")
            xs = f"{mant}*^{int(exp)}"
        lines.append(f"{s}\t{xs}\t{y!r}\t{z!r}\t0.0")
    lines += ["1000.0\t2000.0", f"{smiles}\t{smiles}", "InChI=1S/x\tInChI=1S/x"]
    return "\n".join(lines) + "\n"


def write_archive(path, molecules, star_exponent=True):
    with tarfile.open(path, "w:bz2") as tar:
        for mol in molecules:
            data = xyz_text(*mol, star_exponent=star_exponent).encode()
            info = tarfile.TarInfo(f"dsgdb9nsd_{mol[0]:06d}.xyz")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def fake_molecule(index, n_heavy=2):
    """A small C_n H_(2n+2) chain with GDB index `index` (geometry irrelevant here)."""
    symbols = ["C"] * n_heavy + ["H"] * (2 * n_heavy + 2)
    coords = [[1.5 * i, 0.1 * i, 0.0] for i in range(len(symbols))]
    return (index, symbols, coords, "C" * n_heavy)


def split_name(index):
    return qm9.SPLITS[int(split_of_gdb_index(np.array([index]))[0])]


# ------------------------------------------------------------------------------------------
# Split (no dataset needed)


def test_uncharacterised_list_is_the_published_one():
    ex = uncharacterised_gdb9_indices()
    assert ex.shape == (3054,)
    assert np.all(np.diff(ex) > 0)
    assert ex[0] == 58 and ex[-1] == 133866  # first and last entries of uncharacterized.txt
    assert {58, 61, 80, 185, 186, 245}.issubset(set(ex.tolist()))
    assert len(qm9.characterised_gdb9_indices()) == 130_831


def test_edm_split_matches_the_global_seed_recipe():
    """EDM seeds numpy's global RNG; our private RandomState must give the same split."""
    state = np.random.get_state()
    try:
        np.random.seed(0)
        perm = np.random.permutation(130_831)
    finally:
        np.random.set_state(state)
    included = np.array(sorted(set(range(1, 133_886)) - set(uncharacterised_gdb9_indices())))
    expected = {
        "train": np.sort(included[perm[:100_000]]),
        "valid": np.sort(included[perm[100_000:117_748]]),
        "test": np.sort(included[perm[117_748:]]),
    }
    got = edm_split_indices()
    assert {k: len(v) for k, v in got.items()} == {
        "train": 100_000,
        "valid": 17_748,
        "test": 13_083,
    }
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])
    both = np.concatenate(list(got.values()))
    assert len(np.unique(both)) == 130_831
    assert set(split_of_gdb_index(np.array([58, 0, 133_886, -3])).tolist()) == {-1}


# ------------------------------------------------------------------------------------------
# Raw GDB-9 archive


def test_parse_gdb9_xyz_reads_star_exponents():
    index, symbols, coords, smiles = parse_gdb9_xyz(xyz_text(*METHANE, star_exponent=True))
    assert index == 1 and symbols == METHANE[1] and smiles == "C"
    np.testing.assert_allclose(coords, np.array(METHANE[2]), rtol=1e-9)


def test_archive_source_splits_and_caches(tmp_path, monkeypatch):
    mols = [METHANE, fake_molecule(2), WATER] + [fake_molecule(i) for i in range(4, 30)]
    mols.append(fake_molecule(58))  # uncharacterised: must be dropped
    archive = write_archive(tmp_path / "dsgdb9nsd.xyz.tar.bz2", mols)
    cache = tmp_path / "cache"
    parts = {s: load_qm9(s, source=archive, cache_dir=cache) for s in qm9.SPLITS}
    assert len(list(cache.glob("gdb9-*.npz"))) == 1
    for s, d in parts.items():
        assert d["positions"].shape == (len(d["index"]), MAX_ATOMS, 3)
        assert d["positions"].dtype == np.float32 and d["charges"].dtype == np.int32
        assert all(split_name(i) == s for i in d["index"])
        assert np.all(np.diff(d["index"]) > 0)
    everything = np.sort(np.concatenate([d["index"] for d in parts.values()]))
    np.testing.assert_array_equal(everything, [1, 2, 3] + list(range(4, 30)))
    whole = load_qm9("all", source=archive, cache_dir=cache)  # 58 is uncharacterised
    np.testing.assert_array_equal(whole["index"], everything)
    # Methane, wherever it landed, is parsed exactly.
    split = split_name(1)
    d = parts[split]
    row = int(np.flatnonzero(d["index"] == 1)[0])
    assert d["num_atoms"][row] == 5 and d["smiles"][row] == "C"
    np.testing.assert_array_equal(d["charges"][row, :6], [6, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(d["positions"][row, :5], np.array(METHANE[2]), rtol=1e-6)
    assert np.all(d["positions"][row, 5:] == 0)

    # Second call: from the cache, without parsing.
    def no_parse(path):
        raise AssertionError("the archive was parsed again instead of read from the cache")

    monkeypatch.setattr(qm9, "_parse_gdb9_archive", no_parse)
    again = load_qm9(split, source=archive, cache_dir=cache)
    for k in d:
        np.testing.assert_array_equal(again[k], d[k])


def test_directory_of_xyz_files(tmp_path):
    for mol in (METHANE, WATER):
        (tmp_path / f"dsgdb9nsd_{mol[0]:06d}.xyz").write_text(xyz_text(*mol))
    d = load_qm9("all", source=tmp_path, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(d["index"], [1, 3])
    np.testing.assert_array_equal(d["num_atoms"], [5, 3])


def test_archive_with_foreign_element_names_it_and_its_index(tmp_path):
    bad = (1234, ["C", "S", "H", "H", "H", "H"], [[0.0, 0.0, float(i)] for i in range(6)], "CS")
    archive = write_archive(tmp_path / "bad.tar.bz2", [METHANE, bad])
    with pytest.raises(ValueError, match=r"GDB index 1234.*element S at atom 1"):
        load_qm9("train", source=archive, cache_dir=tmp_path / "cache")


def test_archive_with_oversized_molecule_names_it_and_its_index(tmp_path):
    big = fake_molecule(4321, n_heavy=10)  # 10 C + 22 H = 32 atoms
    archive = write_archive(tmp_path / "big.tar.bz2", [METHANE, big])
    with pytest.raises(ValueError, match=r"GDB index 4321.*32 atoms.*maximum of 29"):
        load_qm9("train", source=archive, cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------------------------------
# EDM-format npz


def write_edm_npz(path, charges, positions, index=None, **extra):
    charges = np.asarray(charges)
    arrays = {
        "charges": charges,
        "positions": np.asarray(positions, np.float32),
        "num_atoms": (charges > 0).sum(-1),
        "A": np.ones(len(charges)),  # EDM files carry properties too
        **extra,
    }
    if index is not None:
        arrays["index"] = np.asarray(index)
    np.savez(path, **arrays)
    return path


def test_edm_npz_directory_and_file(tmp_path):
    rng = np.random.default_rng(0)
    charges = np.array([[6, 1, 1, 1, 1, 0], [8, 1, 1, 0, 0, 0]])
    pos = rng.normal(size=(2, 6, 3)) * (charges > 0)[..., None]
    for s in qm9.SPLITS:
        write_edm_npz(tmp_path / f"{s}.npz", charges, pos, index=[10, 20])
    d = load_qm9("valid", source=tmp_path)
    assert d["positions"].shape == (2, MAX_ATOMS, 3) and d["charges"].shape == (2, MAX_ATOMS)
    np.testing.assert_array_equal(d["charges"][:, :6], charges)
    assert np.all(d["charges"][:, 6:] == 0)
    np.testing.assert_allclose(d["positions"][:, :6], pos, rtol=1e-6)
    np.testing.assert_array_equal(d["num_atoms"], [5, 3])
    np.testing.assert_array_equal(d["index"], [10, 20])
    assert list(d["smiles"]) == ["", ""]
    assert len(load_qm9("all", source=tmp_path)["index"]) == 6
    single = write_edm_npz(tmp_path / "mine.npz", charges, pos)
    d1 = load_qm9("test", source=single)
    np.testing.assert_array_equal(d1["index"], [-1, -1])


def test_edm_npz_foreign_element(tmp_path):
    charges = np.array([[6, 1, 1, 1, 1], [16, 1, 1, 0, 0]])
    path = write_edm_npz(tmp_path / "train.npz", charges, np.zeros((2, 5, 3)), index=[7, 99])
    with pytest.raises(ValueError, match=r"GDB index 99.*S \(atomic number 16\) at atom 0"):
        load_qm9("train", source=path)


def test_edm_npz_oversized_and_corrupt(tmp_path):
    charges = np.zeros((1, 31), int)
    charges[0, :30] = 6
    path = write_edm_npz(tmp_path / "train.npz", charges, np.zeros((1, 31, 3)), index=[5])
    with pytest.raises(ValueError, match=r"GDB index 5.*30 atoms"):
        load_qm9("train", source=path)
    holes = np.array([[6, 0, 1, 1, 1]])
    path = write_edm_npz(tmp_path / "holes.npz", holes, np.zeros((1, 5, 3)), index=[6])
    with pytest.raises(ValueError, match="corrupt"):
        load_qm9("train", source=path)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not an EDM-format"):
        load_qm9("train", source=tmp_path / "other.npz")


# ------------------------------------------------------------------------------------------
# Arguments, cache location, missing qm9pack


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_qm9("training")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_qm9("train", source=tmp_path / "nowhere.tar.bz2")
    write_edm_npz(tmp_path / "train.npz", [[6, 1, 1, 1, 1]], np.zeros((1, 5, 3)))
    with pytest.raises(FileNotFoundError, match="valid.npz"):
        load_qm9("valid", source=tmp_path)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMDIFF_JAX_DATA", str(tmp_path))
    assert qm9.default_cache_dir() == tmp_path / "qm9"
    monkeypatch.delenv("SYMDIFF_JAX_DATA")
    assert qm9.default_cache_dir().parts[-3:] == (".cache", "symdiff_jax", "qm9")


def test_missing_qm9pack_says_how_to_install_and_the_alternative(monkeypatch, tmp_path):
    monkeypatch.setattr(qm9.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError) as info:
        load_qm9("train", cache_dir=tmp_path)
    message = str(info.value)
    assert 'pip install -e ".[qm9]"' in message
    assert "source=" in message and "dsgdb9nsd.xyz.tar.bz2" in message


# ------------------------------------------------------------------------------------------
# The real dataset (needs the qm9pack wheel)


@pytest.fixture(scope="module")
def qm9_all():
    pytest.importorskip("qm9pack")
    return {s: load_qm9(s) for s in qm9.SPLITS}


def test_qm9pack_indices_are_the_characterised_molecules():
    pytest.importorskip("qm9pack")
    all_ = load_qm9("all")
    np.testing.assert_array_equal(all_["index"], qm9.characterised_gdb9_indices())


def test_real_split_sizes_and_train_statistics(qm9_all):
    assert {s: len(d["index"]) for s, d in qm9_all.items()} == qm9.SPLIT_SIZES
    for s, d in qm9_all.items():
        np.testing.assert_array_equal(d["index"], edm_split_indices()[s])
    train = qm9_all["train"]
    counts = {z: int((train["charges"] == z).sum()) for z in EDM_TRAIN_ATOM_COUNTS}
    assert counts == EDM_TRAIN_ATOM_COUNTS
    assert round(float(train["num_atoms"].mean()), 2) == 18.03
    sizes = {
        int(n): int(c)
        for n, c in zip(*np.unique(train["num_atoms"], return_counts=True), strict=True)
    }
    assert sizes == EDM_TRAIN_SIZE_COUNTS
    # Real atoms come first; padding is exactly zero.
    mask = np.arange(MAX_ATOMS) < train["num_atoms"][:, None]
    assert np.all((train["charges"] > 0) == mask)
    assert np.all(train["positions"][~mask] == 0)


def test_real_second_load_is_fast(qm9_all):
    start = time.perf_counter()
    load_qm9("train")
    assert time.perf_counter() - start < 5.0


def test_archive_and_qm9pack_agree(tmp_path, qm9_all):
    """Molecules written out as GDB-9 xyz files parse back to the qm9pack arrays."""
    symbols = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
    picked = []
    for d in qm9_all.values():
        for row in (0, 1, len(d["index"]) - 1):
            n = int(d["num_atoms"][row])
            picked.append(
                (
                    int(d["index"][row]),
                    [symbols[int(z)] for z in d["charges"][row, :n]],
                    [[float(v) for v in p] for p in d["positions"][row, :n]],
                    str(d["smiles"][row]),
                )
            )
    archive = write_archive(tmp_path / "part.tar.bz2", picked)
    for s, d in qm9_all.items():
        mine = load_qm9(s, source=archive, cache_dir=tmp_path / "cache")
        rows = np.searchsorted(d["index"], mine["index"])
        assert len(rows) == 3
        for k in ("positions", "charges", "num_atoms", "index", "smiles"):
            np.testing.assert_array_equal(mine[k], d[k][rows])


def test_graph_smiles_of_an_archive_are_cached(tmp_path):
    archive = write_archive(tmp_path / "small.tar.bz2", [METHANE, WATER])
    cache = tmp_path / "cache"
    got = qm9.load_qm9_graph_smiles("all", source=archive, cache_dir=cache)
    assert list(got) == ["[H]C([H])([H])[H]", "[H]O[H]"]
    assert len(list(cache.glob("*graph-smiles-all*.npz"))) == 1
    assert list(qm9.load_qm9_graph_smiles("all", source=archive, cache_dir=cache)) == list(got)


@pytest.mark.slow
def test_real_graph_smiles_of_train_split():
    """EDM's novelty reference: ~1 min once (then cached). Test molecules are new to train."""
    pytest.importorskip("qm9pack")
    from symdiff_jax.metrics import rdkit_metrics

    train_graph = qm9.load_qm9_graph_smiles("train")
    assert len(train_graph) == 100_000
    assert 0.97 < np.mean(train_graph != "") < 0.98
    test = load_qm9("test")
    got = rdkit_metrics(
        test["positions"], test["charges"], None, train_graph, canonicalise_train=False
    )
    assert got["novelty"] > 0.99
