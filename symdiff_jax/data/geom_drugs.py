"""GEOM-Drugs with hydrogens in EDM's processed format, split exactly as EDM splits it.

Facts (from `build_geom_dataset.py`, `main_geom_drugs.py`, `configs/datasets_config.py`
and `data/geom/README.md` of ehoogeboom/e3_diffusion_for_molecules; leozhangML/SymDiff
ships the same files, the same `geom_permutation.npy` blob, and the same settings):

- `build_geom_dataset.py --conformations 30` reads GEOM's `drugs_crude.msgpack` and keeps,
  for every SMILES, the (up to) 30 conformers of lowest `totalenergy`. It writes
  - `geom_drugs_30.npy`: float64 rows `[id, atomic number, x, y, z]` (Angstrom), the atoms
    of all kept conformers one after another. The `id` counter is increased once per
    *conformer* (not per SMILES), so every conformer is one "molecule" of the dataset;
  - `geom_drugs_n_30.npy`: the number of atoms of each conformer, in the same order;
  - `geom_drugs_smiles.txt`: one SMILES per GEOM molecule (not per conformer; the files
    do not record which conformers belong to which SMILES).
- `load_split_data` cuts the rows into conformers wherever the id of consecutive rows
  changes, reorders the conformers with the fixed permutation `geom_permutation.npy`
  (int32, drawn once with an unseeded `np.random.permutation` and shipped in the repo's
  `data/geom/`, read from the directory of the `.npy` file), and then takes the first
  `int(0.1 * M)` as validation, the next `int(0.1 * M)` as test and the rest as train.
- Atom types with hydrogens (`geom_with_h`): H, B, C, N, O, F, Al, Si, P, S, Cl, As, Br,
  I, Hg, Bi (atomic numbers 1, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 33, 35, 53, 80, 83);
  `max_n_nodes` 181; the size histogram there sums to 6,922,516 conformers with
  322,877,623 atoms (3 to 181 atoms each).
- GEOM training runs use `--include_charges False` (features are the 16-way one-hot only)
  and `--normalize_factors [1,4,10]`.

Nothing is downloaded or cached: `load_geom_drugs` memory-maps the `.npy` file and gathers
the conformers of the requested split. The full train split padded to 181 atoms takes
about 12 GB (positions) + 4 GB (charges) of memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from symdiff_jax.data.features import (
    CHARGE_SCALE,
    ONE_HOT_SCALE,
    array_module,
    atomic_numbers_from_features,
    one_hot,
)

#: Atomic numbers of the GEOM-Drugs atom types (with hydrogens), in one-hot order (EDM).
GEOM_ATOM_TYPES: tuple[int, ...] = (1, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 33, 35, 53, 80, 83)
#: Element symbols in one-hot order.
GEOM_ATOM_SYMBOLS: tuple[str, ...] = (
    "H", "B", "C", "N", "O", "F", "Al", "Si", "P", "S", "Cl", "As", "Br", "I", "Hg", "Bi",
)  # fmt: skip
#: Largest conformer (atoms, hydrogens included); arrays are padded to this size.
GEOM_MAX_ATOMS: int = 181
#: Conformers in EDM's `geom_drugs_30.npy` (sum of its size histogram).
GEOM_NUM_CONFORMERS: int = 6_922_516
#: Split names; "val" is accepted as an alias of "valid".
GEOM_SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Fractions of the permuted conformers that go to validation and test (EDM).
VAL_PROPORTION: float = 0.1
TEST_PROPORTION: float = 0.1
#: EDM's split permutation file, looked for in `data_dir`.
PERMUTATION_FILE: str = "geom_permutation.npy"
#: Environment variable naming the data root (GEOM files are looked for in `<root>/geom`).
DATA_ENV_VAR: str = "SYMDIFF_JAX_DATA"

_CHUNK_ROWS = 1 << 22
_CHUNK_CONFORMERS = 1 << 15
_Z_TO_TYPE = np.full(max(GEOM_ATOM_TYPES) + 1, -1, np.int64)
_Z_TO_TYPE[list(GEOM_ATOM_TYPES)] = np.arange(len(GEOM_ATOM_TYPES))
_HOW_TO_GET = (
    "To get them: download GEOM's drugs_crude.msgpack (about 50 GB, "
    "https://dataverse.harvard.edu/api/access/datafile/4360331, see data/geom/README.md of "
    "https://github.com/ehoogeboom/e3_diffusion_for_molecules), untar it, and run EDM's "
    "`python build_geom_dataset.py --conformations {c} --data_dir <dir>` (pip install "
    "msgpack), which writes geom_drugs_{c}.npy, geom_drugs_n_{c}.npy and "
    "geom_drugs_smiles.txt; copy EDM's data/geom/geom_permutation.npy next to them."
)


def default_geom_dir() -> Path:
    """`$SYMDIFF_JAX_DATA/geom` if the variable is set, else `~/.cache/symdiff_jax/geom`."""
    root = os.environ.get(DATA_ENV_VAR)
    if root:
        return Path(root).expanduser() / "geom"
    return Path.home() / ".cache" / "symdiff_jax" / "geom"


def geom_file_names(max_conformers: int = 30) -> dict[str, str]:
    """File names EDM's `build_geom_dataset.py --conformations <max_conformers>` writes.

    Returns:
      `{"conformers": "geom_drugs_30.npy", "num_atoms": "geom_drugs_n_30.npy",
      "smiles": "geom_drugs_smiles.txt", "permutation": "geom_permutation.npy"}` (for 30).
    """
    c = int(max_conformers)
    return {
        "conformers": f"geom_drugs_{c}.npy",
        "num_atoms": f"geom_drugs_n_{c}.npy",
        "smiles": "geom_drugs_smiles.txt",
        "permutation": PERMUTATION_FILE,
    }


# --------------------------------------------------------------------------------------
# Split


def conformer_boundaries(ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Start rows and sizes of the conformers of an id column (EDM's `load_split_data`).

    A new conformer starts at row 0 and wherever the id differs from the previous row's.

    Args:
      ids: `[R]` id column (any numeric dtype; cast to int64 as EDM's `astype(int)`); may
        be a memory-mapped column, it is read in chunks.

    Returns:
      `(starts [M] int64, sizes [M] int64)`.
    """
    total = int(np.shape(ids)[0])
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = [np.zeros(1, np.int64)]
    previous = None
    for s in range(0, total, _CHUNK_ROWS):
        chunk = np.asarray(ids[s : s + _CHUNK_ROWS]).astype(np.int64)
        if previous is not None and chunk[0] != previous:
            starts.append(np.array([s], np.int64))
        starts.append(np.flatnonzero(chunk[1:] != chunk[:-1]).astype(np.int64) + s + 1)
        previous = chunk[-1]
    start = np.concatenate(starts)
    return start, np.diff(np.append(start, total))


def edm_geom_split(permutation: Any) -> dict[str, np.ndarray]:
    """EDM's GEOM-Drugs split of `M` conformers given the permutation.

    Conformer `permutation[k]` (file order) goes to position `k`; positions
    `[0, int(0.1 M))` are validation, the next `int(0.1 M)` test, the rest train
    (`build_geom_dataset.load_split_data`).

    Args:
      permutation: `[M]` permutation of `0..M-1` (EDM's `geom_permutation.npy`).

    Returns:
      `{"train", "valid", "test"}` -> conformer indices (file order positions) in the
      permuted order EDM iterates them.
    """
    perm = np.asarray(permutation).astype(np.int64)
    m = perm.shape[0]
    n_val = int(m * VAL_PROPORTION)
    n_test = int(m * TEST_PROPORTION)
    return {
        "train": perm[n_val + n_test :],
        "valid": perm[:n_val],
        "test": perm[n_val : n_val + n_test],
    }


def _check_permutation(perm: np.ndarray, m: int, where: str) -> np.ndarray:
    if perm.ndim != 1 or not np.issubdtype(perm.dtype, np.integer):
        raise ValueError(
            f"{where} must be a 1-D integer permutation; got dtype {perm.dtype}, shape "
            f"{perm.shape}."
        )
    if perm.shape[0] != m:
        raise ValueError(
            f"{where} permutes {perm.shape[0]} conformers but the conformer file holds {m}; "
            f"it belongs to another build (EDM's file is for geom_drugs_30.npy with "
            f"{GEOM_NUM_CONFORMERS:,} conformers). Use the matching file, or pass "
            f"permutation_seed=<int> for a seeded split."
        )
    if not np.array_equal(np.sort(perm), np.arange(m)):
        raise ValueError(f"{where} is not a permutation of 0..{m - 1} (repeated or missing ids).")
    return perm.astype(np.int64)


# --------------------------------------------------------------------------------------
# Loading


def _symbol(z: int) -> str:
    try:
        from rdkit import Chem

        return Chem.GetPeriodicTable().GetElementSymbol(int(z))
    except Exception:  # noqa: BLE001 - only used to word an error message
        return f"Z={z}"


def _missing_error(missing: list[Path], data_dir: Path, max_conformers: int) -> FileNotFoundError:
    names = ", ".join(p.name for p in missing)
    extra = ""
    if any(p.name == PERMUTATION_FILE for p in missing):
        extra = (
            f" {PERMUTATION_FILE} fixes EDM's split: copy data/geom/{PERMUTATION_FILE} from "
            f"https://github.com/ehoogeboom/e3_diffusion_for_molecules (git lfs), or pass "
            f"permutation_seed=<int> for a seeded split of your own."
        )
    return FileNotFoundError(
        f"GEOM-Drugs file(s) {names} not found in {data_dir} (looked for "
        f"{', '.join(str(p) for p in missing)}). "
        + _HOW_TO_GET.format(c=int(max_conformers))
        + extra
    )


def load_geom_drugs(
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    max_conformers: int = 30,
    max_atoms: int | None = None,
    permutation_seed: int | None = None,
) -> dict[str, np.ndarray]:
    """Loads one split of EDM's processed GEOM-Drugs (with hydrogens), padded.

    Args:
      split: "train", "valid" (or "val"), "test", or "all" (every conformer, file order).
      data_dir: directory holding EDM's files (see `geom_file_names`); default
        `default_geom_dir()`.
      max_conformers: the `--conformations` the files were built with (it names them:
        `geom_drugs_<max_conformers>.npy`); EDM and SymDiff use 30.
      max_atoms: padding width; default `GEOM_MAX_ATOMS` (181). A conformer with more
        atoms is an error (not dropped, which would change the split).
      permutation_seed: None (default) uses EDM's `geom_permutation.npy` from `data_dir`,
        which reproduces EDM's split exactly; an integer instead permutes with
        `np.random.RandomState(seed).permutation(M)` (same fractions, a different split).

    Returns:
      A dict of numpy arrays, conformers in EDM's order for the split (the permuted order;
      "all": file order):
        positions      `[M, max_atoms, 3]` float32, Angstrom as stored (not centred);
        charges        `[M, max_atoms]` int32 atomic numbers, 0 = padding;
        num_atoms      `[M]` int32, real atoms come first;
        molecule_id    `[M]` int64, the id column of the file (EDM counts conformers);
        index          `[M]` int64, position of the conformer in the file (0-based);
        dataset_smiles `[K]` str, only if `geom_drugs_smiles.txt` is present: the SMILES
                       of all K GEOM molecules in build order. Not aligned with the
                       conformers (EDM's files do not link them): pop it before
                       passing the dict to `batch_iterator`.

    Raises:
      ValueError: unknown split; a malformed file (not `[R, 5]`, id column and
        `geom_drugs_n_*.npy` disagree, non-integer atomic numbers); an element outside
        `GEOM_ATOM_SYMBOLS` or a conformer over `max_atoms` atoms (the message names it,
        its conformer index, id and file row); a permutation file of the wrong length or
        not a permutation.
      FileNotFoundError: the conformer file, or `geom_permutation.npy` when
        `permutation_seed` is None, is missing; the message names the files, the
        directory, and how to build them.

    Example:
      >>> train = load_geom_drugs("train", "data/geom")          # doctest: +SKIP
      >>> train["positions"].shape                                # doctest: +SKIP
      (5538014, 181, 3)
    """
    split = "valid" if split == "val" else split
    if split not in (*GEOM_SPLITS, "all"):
        raise ValueError(f"split must be one of {(*GEOM_SPLITS, 'all')} (or 'val'); got {split!r}.")
    width = GEOM_MAX_ATOMS if max_atoms is None else int(max_atoms)
    if width < 1:
        raise ValueError(f"max_atoms must be a positive integer; got {max_atoms!r}.")
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_geom_dir()
    files = {k: data_dir / v for k, v in geom_file_names(max_conformers).items()}
    needed = [files["conformers"]]
    if permutation_seed is None and split != "all":
        needed.append(files["permutation"])
    missing = [p for p in needed if not p.is_file()]
    if missing:
        raise _missing_error(missing, data_dir, max_conformers)

    table = np.load(files["conformers"], mmap_mode="r", allow_pickle=False)
    where = str(files["conformers"])
    if table.ndim != 2 or table.shape[1] != 5:
        raise ValueError(
            f"{where} must hold rows [id, atomic number, x, y, z] (shape [R, 5]); got shape "
            f"{table.shape}. Is it EDM's geom_drugs_{int(max_conformers)}.npy?"
        )
    starts, sizes = conformer_boundaries(table[:, 0])
    m = starts.shape[0]
    if files["num_atoms"].is_file():
        n_file = np.load(files["num_atoms"], allow_pickle=False).astype(np.int64).ravel()
        if n_file.shape != sizes.shape:
            detail = f"it lists {len(n_file)} sizes for {m} conformers"
        elif not np.array_equal(n_file, sizes):
            k = int(np.flatnonzero(n_file != sizes)[0])
            detail = f"conformer {k} has {int(sizes[k])} rows but {int(n_file[k])} atoms listed"
        else:
            detail = ""
        if detail:
            raise ValueError(
                f"{files['num_atoms']} does not match the id column of {where}: {detail}. "
                f"The files come from different builds or are corrupt; rebuild them."
            )

    if split == "all":
        selected = np.arange(m, dtype=np.int64)
    else:
        if permutation_seed is None:
            perm = np.load(files["permutation"], allow_pickle=False)
            perm = _check_permutation(perm, m, str(files["permutation"]))
        else:
            perm = np.random.RandomState(int(permutation_seed)).permutation(m)
        selected = edm_geom_split(perm)[split]

    sel_sizes = sizes[selected]
    big = np.flatnonzero(sel_sizes > width)
    if big.size:
        k = int(selected[big[0]])
        row = int(starts[k])
        raise ValueError(
            f"GEOM-Drugs conformer {k} (id {int(table[row, 0])}, rows {row}..."
            f"{row + int(sizes[k]) - 1} of {where}) has {int(sizes[k])} atoms, more than "
            f"max_atoms={width}. Pass a larger max_atoms (GEOM-Drugs goes up to "
            f"{GEOM_MAX_ATOMS})."
        )

    out = {
        "positions": np.zeros((len(selected), width, 3), np.float32),
        "charges": np.zeros((len(selected), width), np.int32),
        "num_atoms": sel_sizes.astype(np.int32),
        "molecule_id": np.zeros(len(selected), np.int64),
        "index": selected.copy(),
    }
    for c0 in range(0, len(selected), _CHUNK_CONFORMERS):
        # read the chunk's conformers in file order (sequential reads of the memory map)
        slot = c0 + np.argsort(selected[c0 : c0 + _CHUNK_CONFORMERS], kind="stable")
        conf = selected[slot]
        n = sizes[conf]
        local = np.repeat(np.arange(len(conf)), n)
        atom = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        rows = np.repeat(starts[conf], n) + atom
        block = np.asarray(table[rows], np.float64)
        z = block[:, 1]
        zi = z.astype(np.int64)
        bad = (zi != z) | (zi < 0) | (zi >= len(_Z_TO_TYPE))
        bad |= _Z_TO_TYPE[np.clip(zi, 0, len(_Z_TO_TYPE) - 1)] < 0
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            k = int(conf[local[r]])
            zv = z[r]
            name = (
                f"{_symbol(int(zv))} (atomic number {int(zv)})"
                if zv == int(zv) and zv > 0
                else f"atomic number {zv!r}"
            )
            raise ValueError(
                f"GEOM-Drugs conformer {k} (id {int(block[r, 0])}, row {int(rows[r])} of "
                f"{where}) has element {name} at atom {int(atom[r])}; GEOM-Drugs with "
                f"hydrogens has only {', '.join(GEOM_ATOM_SYMBOLS)}. The file is not EDM's "
                f"GEOM-Drugs (or is corrupt)."
            )
        if not np.all(np.isfinite(block[:, 2:])):
            r = int(np.flatnonzero(~np.isfinite(block[:, 2:]).all(-1))[0])
            raise ValueError(
                f"GEOM-Drugs conformer {int(conf[local[r]])} (row {int(rows[r])} of {where}) "
                f"has non-finite coordinates; the file is corrupt."
            )
        dest = slot[local]
        out["positions"][dest, atom] = block[:, 2:]
        out["charges"][dest, atom] = zi
        out["molecule_id"][slot] = table[starts[conf], 0].astype(np.int64)

    if files["smiles"].is_file():
        lines = files["smiles"].read_text(encoding="utf-8").splitlines()
        out["dataset_smiles"] = np.array([s.strip() for s in lines if s.strip()], dtype=str)
    return out


# --------------------------------------------------------------------------------------
# Features


def geom_one_hot(charges: Any, mask: Any = None) -> Any:
    """`[..., N, 16]` one-hot over `GEOM_ATOM_TYPES` of atomic numbers `[..., N]`.

    Padded atoms and elements outside the list get a zero row; `mask` zeroes more rows.
    """
    return one_hot(charges, mask, GEOM_ATOM_TYPES)


def geom_features(
    charges: Any,
    mask: Any = None,
    *,
    scaled: bool = True,
    include_atomic_number: bool = False,
) -> Any:
    """GEOM-Drugs atom features: the 16-way one-hot, optionally followed by `Z`.

    EDM and SymDiff train on GEOM-Drugs with `include_charges=False`, i.e. the one-hot
    alone (16 channels); `include_atomic_number=True` appends `Z` as QM9's `featurise`
    does (17 channels). Scaling follows `--normalize_factors [1,4,10]`: one-hot / 4,
    `Z` / 10.

    Args:
      charges: `[..., N]` atomic numbers (0 = padding).
      mask: `[..., N]`, nonzero for real atoms; None uses `charges > 0`.
      scaled: divide by the normalise factors (the model input); False gives raw values.
      include_atomic_number: append the atomic-number channel.

    Returns:
      float32 `[..., N, 16]` (or `[..., N, 17]`), zero on padded atoms; numpy for numpy
      inputs, JAX for JAX inputs (jit/vmap compatible).
    """
    xp = array_module(charges, mask)
    z = xp.asarray(charges)
    m = (z > 0).astype(xp.float32) if mask is None else xp.asarray(mask, dtype=xp.float32)
    oh = geom_one_hot(z, m)
    if scaled:
        oh = oh / ONE_HOT_SCALE
    if not include_atomic_number:
        return oh
    zf = z.astype(xp.float32)[..., None] * m[..., None]
    if scaled:
        zf = zf / CHARGE_SCALE
    return xp.concatenate([oh, zf], axis=-1)


def atomic_numbers_from_geom_features(h: Any, mask: Any = None) -> Any:
    """Decodes `[..., N, >=16]` GEOM features (raw, scaled or noisy) to atomic numbers.

    Takes the argmax of the 16 one-hot channels and maps it to `GEOM_ATOM_TYPES`; padded
    atoms (mask 0) get 0. Returns int32 `[..., N]`.
    """
    return atomic_numbers_from_features(h, mask, GEOM_ATOM_TYPES)


__all__ = [
    "GEOM_ATOM_SYMBOLS",
    "GEOM_ATOM_TYPES",
    "GEOM_MAX_ATOMS",
    "GEOM_NUM_CONFORMERS",
    "GEOM_SPLITS",
    "PERMUTATION_FILE",
    "atomic_numbers_from_geom_features",
    "conformer_boundaries",
    "default_geom_dir",
    "edm_geom_split",
    "geom_features",
    "geom_file_names",
    "geom_one_hot",
    "load_geom_drugs",
]
