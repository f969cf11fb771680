"""QM9 with hydrogens, split exactly as EDM splits it, offline by default.

Sources, in the order `load_qm9` considers them:

1. `source=<path>` given by the user:
   - EDM-format npz (what EDM's `qm9/data/prepare` writes: keys `positions`, `charges`,
     `num_atoms`, optionally `index`): a directory holding `train.npz`, `valid.npz`,
     `test.npz`, or one `.npz` file that is taken as the requested split;
   - the raw GDB-9 archive `dsgdb9nsd.xyz.tar.bz2` of the QM9 figshare record (any tar
     archive, or a directory, of `dsgdb9nsd_*.xyz` files).
2. The `qm9pack` wheel (`pip install -e ".[qm9]"` in a checkout), which ships the 130,831
   characterised GDB-9 molecules (B3LYP xyz in Angstrom, elements, GDB-17 SMILES).

Split (EDM, `qm9/data/prepare/qm9.py` of their code; facts): the 133,885 GDB-9 molecules
minus the 3,054 uncharacterised ones leave 130,831, ordered by GDB index; with
`np.random.seed(0)`, `perm = np.random.permutation(130831)` assigns `perm[:100000]` to
train, the next 17,748 to valid and the last 13,083 (= int(0.1 * 130831)) to test. Each
split is returned in GDB-index order, as EDM stores it. Any subset of GDB-9 (a partial
archive) is split by the same rule, molecule by molecule.

Raw sources are parsed once and cached as an uncompressed npz under the cache directory:
the `cache_dir` argument, else `$SYMDIFF_JAX_DATA/qm9`, else `~/.cache/symdiff_jax/qm9`.
Later calls read the cache (well under a second for the full dataset).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import re
import sys
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from symdiff_jax.data.atomic import read_cache_npz, write_npz_atomic
from symdiff_jax.data.features import ATOM_SYMBOLS, ATOM_TYPES
from symdiff_jax.data.gdb9_uncharacterised import uncharacterised_gdb9_indices

#: Largest molecule in QM9 (atoms, hydrogens included); arrays are padded to this size.
MAX_ATOMS: int = 29
#: Molecules in GDB-9 / QM9 before and after dropping the uncharacterised ones.
NUM_GDB9: int = 133_885
NUM_CHARACTERISED: int = 130_831
#: Split names and sizes (EDM).
SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_SIZES: dict[str, int] = {"train": 100_000, "valid": 17_748, "test": 13_083}
#: Seed of EDM's split permutation (legacy `np.random.seed`).
SPLIT_SEED: int = 0
#: Environment variable naming the data root (the QM9 cache goes to `<root>/qm9`).
DATA_ENV_VAR: str = "SYMDIFF_JAX_DATA"

_CACHE_FORMAT = 1
#: The arrays every QM9 cache file must hold.
_CACHE_KEYS = ("positions", "charges", "num_atoms", "index")
_SYMBOL_TO_Z = dict(zip(ATOM_SYMBOLS, ATOM_TYPES, strict=True))
_ALLOWED_Z = np.array((0, *ATOM_TYPES))
_INSTALL_HINT = (
    'Install it with: pip install -e ".[qm9]" in a checkout (or pip install qm9pack). Or pass '
    "source=<path> to EDM-format npz files (a directory with train.npz / valid.npz / "
    "test.npz, or one .npz) or to the raw GDB-9 archive dsgdb9nsd.xyz.tar.bz2 from the QM9 "
    "figshare record (https://doi.org/10.6084/m9.figshare.c.978904.v5)."
)


# --------------------------------------------------------------------------------------
# Split


def characterised_gdb9_indices() -> np.ndarray:
    """Sorted 1-based GDB indices of the 130,831 characterised QM9 molecules (int64)."""
    return np.setdiff1d(np.arange(1, NUM_GDB9 + 1), uncharacterised_gdb9_indices())


def edm_split_indices() -> dict[str, np.ndarray]:
    """EDM's QM9 split as sorted 1-based GDB indices: `{"train", "valid", "test"}`.

    Reproduces `np.random.seed(0); np.random.permutation(130831)` over the characterised
    molecules in GDB-index order (with a private `RandomState`, leaving numpy's global
    state alone); 100,000 / 17,748 / 13,083 molecules.
    """
    included = characterised_gdb9_indices()
    perm = np.random.RandomState(SPLIT_SEED).permutation(NUM_CHARACTERISED)
    n_train, n_valid = SPLIT_SIZES["train"], SPLIT_SIZES["valid"]
    parts = np.split(perm, [n_train, n_train + n_valid])
    return {name: np.sort(included[p]) for name, p in zip(SPLITS, parts, strict=True)}


@functools.lru_cache(maxsize=1)
def _split_lookup() -> np.ndarray:
    lookup = np.full(NUM_GDB9 + 1, -1, np.int8)
    for k, idx in enumerate(edm_split_indices().values()):
        lookup[idx] = k
    lookup.flags.writeable = False
    return lookup


def split_of_gdb_index(index: np.ndarray) -> np.ndarray:
    """Split of each 1-based GDB index: 0 train, 1 valid, 2 test, -1 uncharacterised/unknown."""
    lookup = _split_lookup()
    index = np.asarray(index, dtype=np.int64)
    inside = (index >= 1) & (index <= NUM_GDB9)
    return np.where(inside, lookup[np.clip(index, 0, NUM_GDB9)], -1)


# --------------------------------------------------------------------------------------
# Validation


def _element_error(symbol: str, index: int, atom: int, where: str) -> ValueError:
    return ValueError(
        f"QM9 molecule with GDB index {index} ({where}) has element {symbol} at atom "
        f"{atom}; QM9 with hydrogens has only {', '.join(ATOM_SYMBOLS)}. The source is not "
        f"QM9 (or is corrupt): check the file."
    )


def _size_error(num_atoms: int, index: int, where: str) -> ValueError:
    return ValueError(
        f"QM9 molecule with GDB index {index} ({where}) has {num_atoms} atoms, more than the "
        f"maximum of {MAX_ATOMS} QM9 molecules have; the source is not QM9 (or is corrupt)."
    )


def _validate_arrays(charges: np.ndarray, num_atoms: np.ndarray, index: np.ndarray, where: str):
    """Checks elements, sizes and left-aligned padding of parsed arrays."""
    big = np.flatnonzero(num_atoms > MAX_ATOMS)
    if big.size:
        i = int(big[0])
        raise _size_error(int(num_atoms[i]), int(index[i]), f"{where}, row {i}")
    bad = ~np.isin(charges, _ALLOWED_Z)
    if bad.any():
        i, a = (int(v) for v in np.argwhere(bad)[0])
        z = int(charges[i, a])
        try:
            from rdkit import Chem

            symbol = Chem.GetPeriodicTable().GetElementSymbol(z)
        except Exception:  # noqa: BLE001 - only used to word the message
            symbol = f"Z={z}"
        raise _element_error(f"{symbol} (atomic number {z})", int(index[i]), a, f"{where}, row {i}")
    expected = np.arange(charges.shape[1]) < num_atoms[:, None]
    wrong = np.flatnonzero(np.any((charges > 0) != expected, axis=-1))
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(
            f"QM9 molecule with GDB index {int(index[i])} ({where}, row {i}) has num_atoms "
            f"{int(num_atoms[i])} but its nonzero charges are not exactly its first "
            f"{int(num_atoms[i])} slots ({int((charges[i] > 0).sum())} nonzero); the file is "
            f"corrupt."
        )


# --------------------------------------------------------------------------------------
# Parsers


def _empty(n: int) -> dict[str, np.ndarray]:
    return {
        "positions": np.zeros((n, MAX_ATOMS, 3), np.float32),
        "charges": np.zeros((n, MAX_ATOMS), np.int32),
        "num_atoms": np.zeros(n, np.int32),
        "index": np.zeros(n, np.int32),
    }


def _qm9pack_dir() -> Path:
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "load_qm9 reads QM9 from the qm9pack wheel by default, and it is not installed. "
            + _INSTALL_HINT
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def qm9pack_version() -> str:
    """The installed `qm9pack` version (a cache key), or "unknown" when it is absent."""
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _parse_qm9pack(data_dir: Path) -> dict[str, np.ndarray]:
    """Reads the CSV tables of the qm9pack wheel into padded arrays (GDB-index order)."""
    csv.field_size_limit(sys.maxsize)
    files = sorted(data_dir.glob("qm9_part*.csv"))
    if not files:
        raise FileNotFoundError(
            f"qm9pack is installed but its data files qm9_part*.csv are missing from "
            f"{data_dir}; reinstall it (pip install --force-reinstall qm9pack). " + _INSTALL_HINT
        )
    rows: list[tuple[int, str, list[str], str]] = []
    for path in files:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            col = {name: header.index(name) for name in ("Index", "SMILES", "Elements", "XYZ_Ang")}
            for row in reader:
                symbols = row[col["Elements"]].strip("[]").replace("'", "").split(",")
                rows.append(
                    (int(row[col["Index"]]), row[col["SMILES"]], symbols, row[col["XYZ_Ang"]])
                )
    rows.sort(key=lambda r: r[0])
    out = _empty(len(rows))
    smiles = []
    for m, (index, smi, symbols, xyz) in enumerate(rows):
        where = f"qm9pack {data_dir}"
        n = len(symbols)
        if n > MAX_ATOMS:
            raise _size_error(n, index, where)
        try:
            z = [_SYMBOL_TO_Z[s.strip()] for s in symbols]
        except KeyError:
            a = next(i for i, s in enumerate(symbols) if s.strip() not in _SYMBOL_TO_Z)
            raise _element_error(symbols[a].strip(), index, a, where) from None
        coords = np.array(xyz.replace("[", "").replace("]", "").split(","), dtype=np.float64)
        out["positions"][m, :n] = coords.reshape(n, 3)
        out["charges"][m, :n] = z
        out["num_atoms"][m] = n
        out["index"][m] = index
        smiles.append(smi)
    out["smiles"] = np.array(smiles, dtype=str)
    return out


def parse_gdb9_xyz(text: str, where: str = "xyz") -> tuple[int, list[str], np.ndarray, str]:
    """Parses one GDB-9 / QM9 `.xyz` file of the figshare record.

    Args:
      text: the file's contents (line 1 atom count, line 2 `gdb <index> <properties>`,
        one line per atom `symbol x y z mulliken` with Mathematica `*^` exponents allowed,
        then frequencies, the GDB-17 and B3LYP SMILES, and the InChIs).
      where: a name for error messages (file name).

    Returns:
      `(gdb_index, element_symbols [n], positions [n, 3] float64 Angstrom, gdb17_smiles)`.

    Raises:
      ValueError: a malformed file.
    """
    lines = text.splitlines()
    try:
        n = int(lines[0].split()[0])
        header = lines[1].split()
        index = int(header[1])
        symbols, coords = [], []
        for line in lines[2 : 2 + n]:
            parts = line.replace("*^", "e").split()
            symbols.append(parts[0])
            coords.append([float(v) for v in parts[1:4]])
        smiles_line = lines[n + 3].split() if len(lines) > n + 3 else []
    except (IndexError, ValueError) as err:
        raise ValueError(f"{where} is not a GDB-9 xyz file: {err}") from err
    if len(coords) != n:
        raise ValueError(f"{where} announces {n} atoms but lists {len(coords)}.")
    return (
        index,
        symbols,
        np.array(coords, dtype=np.float64).reshape(n, 3),
        (smiles_line[0] if smiles_line else ""),
    )


_XYZ_NAME = re.compile(r"dsgdb9nsd_(\d+)\.xyz$")


def _iter_xyz_files(path: Path) -> Iterator[tuple[str, str]]:
    if path.is_dir():
        for f in sorted(path.iterdir()):
            if _XYZ_NAME.search(f.name):
                yield f.name, f.read_text()
        return
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile() and _XYZ_NAME.search(member.name):
                fh = tar.extractfile(member)
                if fh is not None:
                    yield member.name, io.TextIOWrapper(fh, encoding="utf-8").read()


def _parse_gdb9_archive(path: Path) -> dict[str, np.ndarray]:
    """Reads every characterised molecule of a GDB-9 archive (tar or directory)."""
    skip = set(uncharacterised_gdb9_indices().tolist())
    mols = []
    for name, text in _iter_xyz_files(path):
        where = f"{path}: {name}"
        index, symbols, coords, smiles = parse_gdb9_xyz(text, where)
        if index in skip:
            continue
        if len(symbols) > MAX_ATOMS:
            raise _size_error(len(symbols), index, where)
        for a, s in enumerate(symbols):
            if s not in _SYMBOL_TO_Z:
                raise _element_error(s, index, a, where)
        mols.append((index, [_SYMBOL_TO_Z[s] for s in symbols], coords, smiles))
    if not mols:
        raise ValueError(
            f"{path} holds no characterised GDB-9 molecules (files named dsgdb9nsd_*.xyz). "
            + _INSTALL_HINT
        )
    mols.sort(key=lambda m: m[0])
    out = _empty(len(mols))
    for m, (index, z, coords, _) in enumerate(mols):
        n = len(z)
        out["positions"][m, :n] = coords
        out["charges"][m, :n] = z
        out["num_atoms"][m] = n
        out["index"][m] = index
    out["smiles"] = np.array([m[3] for m in mols], dtype=str)
    return out


def _load_edm_npz(path: Path, split: str) -> dict[str, np.ndarray]:
    """Reads one EDM-format npz file and pads it to `MAX_ATOMS`."""
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("positions", "charges", "num_atoms") if k not in f.files]
        if missing:
            raise ValueError(
                f"{path} is not an EDM-format QM9 npz: keys {missing} are missing (found "
                f"{sorted(f.files)})."
            )
        positions = np.asarray(f["positions"], np.float32)
        charges = np.asarray(f["charges"]).astype(np.int64)
        num_atoms = np.asarray(f["num_atoms"]).astype(np.int64)
        index = np.asarray(f["index"]).astype(np.int64) if "index" in f.files else None
    m, width = charges.shape
    if index is None:
        index = np.full(m, -1, np.int64)
    where = f"{path} (split {split!r})"
    if positions.shape != (m, width, 3) or num_atoms.shape != (m,):
        raise ValueError(
            f"{where}: positions {positions.shape}, charges {charges.shape} and num_atoms "
            f"{num_atoms.shape} do not describe [M, N, 3], [M, N], [M] arrays."
        )
    _validate_arrays(charges, num_atoms, index, where)
    if width > MAX_ATOMS:
        positions, charges = positions[:, :MAX_ATOMS], charges[:, :MAX_ATOMS]
    out = _empty(m)
    out["positions"][:, : charges.shape[1]] = positions
    out["charges"][:, : charges.shape[1]] = charges
    out["num_atoms"][:] = num_atoms
    out["index"][:] = index
    out["smiles"] = np.full(m, "", dtype="<U1")
    return out


# --------------------------------------------------------------------------------------
# Cache


def default_cache_dir() -> Path:
    """`$SYMDIFF_JAX_DATA/qm9` if the variable is set, else `~/.cache/symdiff_jax/qm9`."""
    root = os.environ.get(DATA_ENV_VAR)
    if root:
        return Path(root).expanduser() / "qm9"
    return Path.home() / ".cache" / "symdiff_jax" / "qm9"


def _cached(cache_file: Path, parse) -> dict[str, np.ndarray]:
    data = read_cache_npz(cache_file, _CACHE_FORMAT, _CACHE_KEYS)
    if data is not None and len({len(data[k]) for k in _CACHE_KEYS}) != 1:
        warnings.warn(
            f"Rebuilding the cache {cache_file}: its arrays have different lengths "
            f"{[len(data[k]) for k in _CACHE_KEYS]}.",
            stacklevel=2,
        )
        data = None
    if data is not None:
        data["charges"] = data["charges"].astype(np.int32)
        return data
    data = parse()
    stored = {**data, "charges": data["charges"].astype(np.uint8)}
    write_npz_atomic(cache_file, {**stored, "cache_format": np.array(_CACHE_FORMAT)})
    return data


def _archive_key(path: Path) -> str:
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# Public loader


def _select_split(data: dict[str, np.ndarray], split: str) -> dict[str, np.ndarray]:
    if split == "all":
        keep = np.ones(len(data["index"]), bool)
    else:
        keep = split_of_gdb_index(data["index"]) == SPLITS.index(split)
    return {k: v[keep] for k, v in data.items()}


def load_qm9(
    split: str,
    *,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """Loads one split of QM9 with hydrogens, padded to 29 atoms (EDM's split).

    Args:
      split: "train" (100,000 molecules), "valid" (17,748), "test" (13,083), or "all"
        (130,831).
      source: None for the `qm9pack` wheel; or a path to EDM-format npz files (a directory
        with `<split>.npz`, or one `.npz` file taken as the requested split), or to the raw
        GDB-9 archive `dsgdb9nsd.xyz.tar.bz2` (or a directory of its xyz files).
      cache_dir: where parsed raw sources are cached; default `default_cache_dir()`.

    Returns:
      A dict of numpy arrays, molecules in GDB-index order (EDM npz: file order):
        positions  `[M, 29, 3]` float32, Angstrom, as in the source (not centred);
        charges    `[M, 29]` int32 atomic numbers (H 1, C 6, N 7, O 8, F 9), 0 = padding;
        num_atoms  `[M]` int32, real atoms come first;
        smiles     `[M]` str, the GDB-17 SMILES ("" for EDM npz, which has none);
        index      `[M]` int32, 1-based GDB-9 index (-1 if an EDM npz lacks it).

    Raises:
      ImportError: no `source` and qm9pack is not installed (the message says how to
        install it and names the path alternative).
      FileNotFoundError: `source` does not exist, or a directory lacks `<split>.npz` and
        xyz files.
      ValueError: unknown split; a molecule with an element outside H, C, N, O, F or with
        more than 29 atoms (the message names it and its GDB index); a malformed file.

    Example:
      >>> train = load_qm9("train")                      # doctest: +SKIP
      >>> train["positions"].shape                       # doctest: +SKIP
      (100000, 29, 3)
    """
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {(*SPLITS, 'all')}; got {split!r}.")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    if source is None:
        data_dir = _qm9pack_dir()
        cache_file = cache / f"qm9pack-{qm9pack_version()}-v{_CACHE_FORMAT}.npz"
        data = _cached(cache_file, lambda: _parse_qm9pack(data_dir))
        return _select_split(data, split)

    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"QM9 source {str(path)!r} does not exist. Give EDM-format npz files or the "
            f"raw archive dsgdb9nsd.xyz.tar.bz2, or leave source=None to use qm9pack."
        )
    if path.is_file() and path.suffix == ".npz":
        if split == "all":
            raise ValueError("split='all' needs a directory of EDM npz files or a raw source.")
        return _load_edm_npz(path, split)
    if path.is_dir() and any((path / f"{s}.npz").exists() for s in SPLITS):
        names = list(SPLITS) if split == "all" else [split]
        for s in names:
            if not (path / f"{s}.npz").exists():
                raise FileNotFoundError(
                    f"{path} holds EDM-format npz files but not {s}.npz (looked for "
                    f"{path / f'{s}.npz'})."
                )
        parts = [_load_edm_npz(path / f"{s}.npz", s) for s in names]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if path.is_dir() or tarfile.is_tarfile(path):
        cache_file = cache / f"gdb9-{_archive_key(path)}-v{_CACHE_FORMAT}.npz"
        data = _cached(cache_file, lambda: _parse_gdb9_archive(path))
        return _select_split(data, split)
    raise ValueError(
        f"QM9 source {str(path)!r} is neither an EDM-format .npz file, a directory of them, "
        f"nor a GDB-9 xyz archive (dsgdb9nsd.xyz.tar.bz2)."
    )


def load_qm9_graph_smiles(
    split: str = "train",
    *,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """SMILES of the distance-derived bond graph of every molecule of a split (cached).

    This is the reference EDM checks novelty against: each training molecule's xyz turned
    into a graph with the metric's own bond rules (`symdiff_jax.metrics.xyz_smiles` with
    `largest_fragment=False`), not the dataset's SMILES strings (the two disagree for about
    2.5% of QM9, e.g. where the xyz bond orders give another tautomer). Computing it takes
    about a minute for the train split on one core; the result is cached next to the data.

    Args:
      split, source, cache_dir: as `load_qm9`.

    Returns:
      `[M]` str array aligned with `load_qm9(split, source=source)`; "" where RDKit rejects
      the graph. Use as `rdkit_metrics(..., train_smiles=..., canonicalise_train=False)`.
    """
    from symdiff_jax.metrics.rdkit_metrics import xyz_smiles

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if source is None:
        key = f"qm9pack-{qm9pack_version()}"
    else:
        key = f"src-{_archive_key(Path(source).expanduser())}"
    cache_file = cache / f"{key}-graph-smiles-{split}-v{_CACHE_FORMAT}.npz"

    def compute():
        data = load_qm9(split, source=source, cache_dir=cache_dir)
        smi = xyz_smiles(data["positions"], data["charges"], largest_fragment=False)
        return {"smiles": np.array([s or "" for s in smi], dtype=str), "index": data["index"]}

    stored = read_cache_npz(cache_file, _CACHE_FORMAT, ("smiles",))
    if stored is not None:
        return stored["smiles"]
    out = compute()
    write_npz_atomic(cache_file, {**out, "cache_format": np.array(_CACHE_FORMAT)})
    return out["smiles"]
