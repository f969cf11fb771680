"""Your own molecules as a dataset: SDF, xyz or ASE database sources, split and padded.

`load_molecule_source(source)` reads 3D molecules and returns them in the array format of
`load_qm9` (positions `[M, N, 3]` Angstrom, charges `[M, N]`, num_atoms `[M]`, smiles `[M]`,
index `[M]`), split into train / valid / test by a seeded permutation, with the element set
(the one-hot classes) and the padded width read from the data unless given.

Sources:
  - a directory of `.sdf` / `.sd` / `.mol` and `.xyz` files (each may hold several
    molecules), read in sorted file-name order;
  - one SDF file of many molecules (RDKit's `SDMolSupplier`, hydrogens kept);
  - one `.xyz` file of one or more frames;
  - an ASE database (`.db`; needs the `ase` extra).

Atoms are exactly those of the source: hydrogens are trained on only if the file lists
them (add them beforehand with `Chem.AddHs(mol, addCoords=True)` if it does not).

Bad input: a record that cannot be read (an unparsable mol block or xyz file, no 3D
coordinates, an element outside `elements`, more than `max_atoms` atoms) is skipped and
named, with its index, in one warning that counts the skipped records; `strict=True` raises
at the first instead. A source without any usable molecule is an error naming the path.
Parsed sources are cached in memory per process (keyed by the files' sizes and times).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from symdiff_jax.data.ase_io import read_ase_db
from symdiff_jax.data.batching import size_histogram
from symdiff_jax.data.features import featurise
from symdiff_jax.data.writers import read_xyz

#: File suffixes read as SDF / mol files and as xyz files.
SDF_SUFFIXES: tuple[str, ...] = (".sdf", ".sd", ".mol")
XYZ_SUFFIXES: tuple[str, ...] = (".xyz",)
ASE_SUFFIXES: tuple[str, ...] = (".db",)
#: Default train / valid / test fractions of the seeded split.
SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
SOURCE_SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Skipped records named in the warning (the count covers all of them).
_NAMED_SKIPS = 5


@dataclasses.dataclass(frozen=True)
class SkippedRecord:
    """A record of a source that was not used.

    Attributes:
      index: 0-based position of the record in the source's reading order.
      name: where it is (`file`, `file, record k`, `row id`).
      reason: why it was skipped, in one line.
    """

    index: int
    name: str
    reason: str


@dataclasses.dataclass(frozen=True, eq=False)
class MoleculeSource:
    """A molecule source read, checked and split; `source["train"]` is one split.

    Attributes:
      path: the source path as given (expanded).
      splits: `{"train", "valid", "test", "all"}` -> dict of numpy arrays as `load_qm9`
        returns (positions `[M, max_atoms, 3]` float32 Angstrom, not centred; charges
        `[M, max_atoms]` int32, 0 = padding; num_atoms `[M]` int32; smiles `[M]` str, ""
        where none could be derived; index `[M]` int32, the record's position in the
        source). Each split keeps source order.
      atom_types: sorted atomic numbers of the one-hot classes.
      max_atoms: the padded width.
      skipped: the records left out (empty when `strict=True`).
    """

    path: str
    splits: dict[str, dict[str, np.ndarray]]
    atom_types: tuple[int, ...]
    max_atoms: int
    skipped: tuple[SkippedRecord, ...]

    def __getitem__(self, split: str) -> dict[str, np.ndarray]:
        if split not in self.splits:
            raise KeyError(f"split must be one of {sorted(self.splits)}; got {split!r}.")
        return self.splits[split]

    def featurise(self, charges: Any, mask: Any = None) -> Any:
        """Scaled atom features `[one_hot(atom_types) / 4, Z / 10]`, as QM9's `featurise`."""
        return featurise(charges, mask, atom_types=self.atom_types)

    def size_histogram(self, split: str = "train") -> np.ndarray:
        """`[max_atoms + 1]` counts of molecule sizes in `split` (`size_histogram`)."""
        return size_histogram(self[split]["num_atoms"], self.max_atoms)


# --------------------------------------------------------------------------------------
# Arguments


@functools.lru_cache(maxsize=1)
def _periodic_table() -> tuple[dict[str, int], dict[int, str]]:
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    z_of = {table.GetElementSymbol(z): z for z in range(1, 119)}
    return z_of, {z: s for s, z in z_of.items()}


def element_symbol(z: int) -> str:
    """The element symbol of atomic number `z` (`"Z=<z>"` outside 1..118)."""
    return _periodic_table()[1].get(int(z), f"Z={int(z)}")


def parse_elements(elements: str | Sequence[str | int] | None) -> tuple[int, ...] | None:
    """Atomic numbers, sorted and distinct, of an element list; None stays None.

    Args:
      elements: None / "" / () (read the set from the data), a comma-separated string
        ("H,C,N,O"), or a sequence of symbols and/or atomic numbers.

    Returns:
      A sorted tuple of atomic numbers, or None.

    Raises:
      ValueError: an unknown symbol or an atomic number outside 1..118.
    """
    if elements is None:
        return None
    items = elements.split(",") if isinstance(elements, str) else list(elements)
    items = [e.strip() if isinstance(e, str) else e for e in items]
    items = [e for e in items if e != ""]
    if not items:
        return None
    z_of = _periodic_table()[0]
    out = set()
    for e in items:
        if isinstance(e, str) and not e.isdigit():
            z = z_of.get(e.capitalize())
            if z is None:
                raise ValueError(
                    f"data.elements has an unknown element symbol {e!r}; give symbols such "
                    f"as H, C, N, O or atomic numbers."
                )
        else:
            z = int(e)
            if not 1 <= z <= 118:
                raise ValueError(f"data.elements has atomic number {z}; expected 1..118.")
        out.add(z)
    return tuple(sorted(out))


def check_split_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validates `(train, valid, test)` fractions: nonnegative, train > 0, summing to 1."""
    f = tuple(float(v) for v in fractions)
    if len(f) != 3 or any(v < 0 or not math.isfinite(v) for v in f) or f[0] <= 0:
        raise ValueError(
            f"split fractions must be three nonnegative numbers (train, valid, test) with "
            f"train > 0; got {tuple(fractions)}."
        )
    if abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1; got {tuple(fractions)} (sum {sum(f)}).")
    return f  # type: ignore[return-value]


def split_sizes(num_molecules: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Sizes `(train, valid, test)` of a split of `num_molecules`.

    valid and test get `round(fraction * M)` molecules, at least one each when their
    fraction is positive; train gets the rest and must keep at least one.

    Raises:
      ValueError: too few molecules for every split with a positive fraction.
    """
    f = check_split_fractions(fractions)
    sizes = [max(1, round(v * num_molecules)) if v > 0 else 0 for v in f[1:]]
    n_train = num_molecules - sum(sizes)
    if n_train < 1:
        need = 1 + sum(1 for v in f[1:] if v > 0)
        raise ValueError(
            f"the source has {num_molecules} molecules, too few for split fractions {f} (at "
            f"least {need} needed); add molecules or set the valid/test fractions to 0."
        )
    return n_train, sizes[0], sizes[1]


def split_indices(
    num_molecules: int, fractions: Sequence[float] = SPLIT_FRACTIONS, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded split of `range(num_molecules)`: `{"train", "valid", "test"}` sorted indices.

    The permutation is `np.random.default_rng(seed).permutation(num_molecules)`; its first
    `split_sizes(...)[0]` entries are train, then valid, then test.
    """
    n_train, n_valid, _ = split_sizes(num_molecules, fractions)
    perm = np.random.default_rng(seed).permutation(num_molecules)
    parts = np.split(perm, [n_train, n_train + n_valid])
    return {name: np.sort(p) for name, p in zip(SOURCE_SPLITS, parts, strict=True)}


# --------------------------------------------------------------------------------------
# Readers: each yields (name, (atomic_numbers, positions, smiles) or an error message)


def _smiles_of_rdkit(mol) -> str:
    from rdkit import Chem

    try:
        m = Chem.Mol(mol)
        Chem.SanitizeMol(m)
        return Chem.MolToSmiles(Chem.RemoveHs(m))
    except Exception:  # noqa: BLE001 - no SMILES for molecules RDKit rejects
        return ""


def smiles_from_xyz(atomic_numbers: Sequence[int], positions: np.ndarray) -> str:
    """SMILES of the bonds RDKit's `rdDetermineBonds` assigns to a neutral 3D molecule.

    Returns "" when the bonds or bond orders cannot be determined (charged molecules,
    unusual geometries).
    """
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    lines = [str(len(atomic_numbers)), ""]
    lines += [
        f"{element_symbol(z)} {x:.6f} {y:.6f} {w:.6f}"
        for z, (x, y, w) in zip(atomic_numbers, np.asarray(positions).tolist(), strict=True)
    ]
    try:
        mol = Chem.MolFromXYZBlock("\n".join(lines) + "\n")
        if mol is None:
            return ""
        rdDetermineBonds.DetermineBonds(mol, charge=0)
        return Chem.MolToSmiles(Chem.RemoveHs(mol))
    except Exception:  # noqa: BLE001 - no SMILES when RDKit cannot assign bonds
        return ""


def _read_sdf(path: Path, label: str):
    from rdkit import Chem

    if path.stat().st_size == 0:
        return
    try:
        supplier = Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False)
    except OSError as err:
        yield label, f"unreadable file ({err})"
        return
    for k, mol in enumerate(supplier):
        name = f"{label}, record {k}"
        if mol is None:
            yield name, "RDKit cannot parse the mol block"
            continue
        if mol.GetNumAtoms() == 0:
            yield name, "no atoms"
            continue
        if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
            yield name, "no 3D coordinates (a 2D or coordinate-free record)"
            continue
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], np.int64)
        x = np.asarray(mol.GetConformer().GetPositions(), np.float64)
        yield name, (z, x, _smiles_of_rdkit(mol))


def _read_xyz_file(path: Path, label: str):
    try:
        data = read_xyz(path)
    except (ValueError, UnicodeDecodeError) as err:
        yield label, f"unparsable xyz ({err})"
        return
    frames = len(data["comments"])
    if frames == 0:
        yield label, "no xyz frame"
    for k in range(frames):
        keep = data["mask"][k]
        z, x = data["atomic_numbers"][k][keep], data["positions"][k][keep]
        name = label if frames == 1 else f"{label}, frame {k}"
        if len(z) == 0:
            yield name, "no atoms"
            continue
        yield name, (z, x, smiles_from_xyz(z, x))


def _read_db(path: Path, label: str):
    for row, item in read_ase_db(path):
        name = f"{label}, {row}"
        if isinstance(item, Exception):
            yield name, f"unreadable row ({item})"
        elif len(item[0]) == 0:
            yield name, "no atoms"
        else:
            yield name, (item[0], item[1], smiles_from_xyz(*item))


def _files_of(path: Path) -> list[Path]:
    suffixes = SDF_SUFFIXES + XYZ_SUFFIXES
    return sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in suffixes)


def _records(path: Path):
    """Yields `(name, item)` for every record of the source (see the readers)."""
    from rdkit import rdBase

    _blocker = rdBase.BlockLogs()  # noqa: F841 - RDKit's per-record messages off while reading
    if path.is_dir():
        files = _files_of(path)
        if not files:
            raise ValueError(
                f"molecule source {str(path)!r} is a directory without .sdf, .sd, .mol or "
                f".xyz files; put the molecules there or give one such file."
            )
        for f in files:
            yield from _read_file(f, f.name)
    else:
        yield from _read_file(path, path.name)


def _read_file(path: Path, label: str):
    suffix = path.suffix.lower()
    if suffix in SDF_SUFFIXES:
        yield from _read_sdf(path, label)
    elif suffix in XYZ_SUFFIXES:
        yield from _read_xyz_file(path, label)
    elif suffix in ASE_SUFFIXES:
        yield from _read_db(path, label)
    else:
        raise ValueError(
            f"molecule source {str(path)!r} has suffix {suffix!r}; give a directory of "
            f".sdf/.xyz files, a .sdf file, a .xyz file or an ASE database (.db)."
        )


def _signature(path: Path) -> tuple:
    files = _files_of(path) if path.is_dir() else [path]
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


@functools.lru_cache(maxsize=4)
def _parsed(path: str, signature: tuple) -> tuple[tuple, ...]:
    """All records of a source, as `(index, name, item)` (cached per file signature)."""
    del signature  # part of the cache key only
    return tuple((k, name, item) for k, (name, item) in enumerate(_records(Path(path))))


# --------------------------------------------------------------------------------------
# The loader


def _problem(item: Any, elements: tuple[int, ...] | None, max_atoms: int | None) -> str | None:
    if isinstance(item, str):
        return item
    z, x, _ = item
    if not np.all(np.isfinite(x)):
        return "non-finite coordinates"
    if elements is not None:
        bad = sorted({int(v) for v in z} - set(elements))
        if bad:
            have = ", ".join(element_symbol(v) for v in elements)
            return (
                f"element {', '.join(element_symbol(v) for v in bad)} is not in "
                f"data.elements ({have})"
            )
    if max_atoms is not None and len(z) > max_atoms:
        return f"{len(z)} atoms, more than data.max_atoms = {max_atoms}"
    return None


def load_molecule_source(
    source: str | os.PathLike,
    *,
    strict: bool = False,
    elements: str | Sequence[str | int] | None = None,
    max_atoms: int | None = None,
    seed: int = 0,
    split_fractions: Sequence[float] = SPLIT_FRACTIONS,
) -> MoleculeSource:
    """Reads a directory of SDF/xyz files, a multi-molecule SDF, an xyz file or an ASE db.

    Args:
      source: the path (see the module docstring for what it may be).
      strict: raise at the first bad record instead of skipping it with a warning.
      elements: the one-hot element set (symbols or atomic numbers, or "H,C,N,O");
        molecules with other elements are bad records. None / "": the elements present.
      max_atoms: the padded width; larger molecules are bad records. None / 0: the largest
        molecule's size.
      seed: seed of the split permutation (`split_indices`).
      split_fractions: `(train, valid, test)` fractions, summing to 1.

    Returns:
      A `MoleculeSource`: `source["train"]` etc. are dicts of arrays as `load_qm9`
      returns them (padded to `max_atoms`), plus the element set, the width and the
      skipped records.

    Raises:
      FileNotFoundError: the path does not exist.
      ValueError: an unknown suffix, an empty directory, a source without usable
        molecules, bad `elements` / `max_atoms` / fractions, too few molecules to split,
        or (with `strict=True`) the first bad record, named with its index.
      ImportError: an ASE database without ASE installed.

    Warns:
      UserWarning: once per call when records were skipped: how many, and the first few by
        index, name and reason.

    Example:
      >>> src = load_molecule_source("ligands.sdf", elements="H,C,N,O,F,S,Cl")  # doctest: +SKIP
      >>> train = src["train"]                                                # doctest: +SKIP
      >>> batches = batch_iterator(train, 64, features=src.featurise)          # doctest: +SKIP
      >>> hist = src.size_histogram("train")                                  # doctest: +SKIP
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"molecule source {str(path)!r} does not exist; give a directory of .sdf/.xyz "
            f"files, a .sdf or .xyz file, or an ASE database (.db)."
        )
    wanted = parse_elements(elements)
    if max_atoms is not None and int(max_atoms) < 0:
        raise ValueError(
            f"data.max_atoms must be 0 (read from the data) or positive; got {max_atoms}."
        )
    width = int(max_atoms) if max_atoms else None
    fractions = check_split_fractions(split_fractions)

    records = _parsed(str(path), _signature(path))
    if not records:
        raise ValueError(f"molecule source {str(path)!r} holds no molecules.")
    kept, skipped = [], []
    for k, name, item in records:
        reason = _problem(item, wanted, width)
        if reason is None:
            kept.append((k, item))
            continue
        if strict:
            raise ValueError(
                f"molecule source {str(path)!r}: record {k} ({name}): {reason} "
                f"(data.strict=True; set it to False to skip bad records)."
            )
        skipped.append(SkippedRecord(k, name, reason))
    if not kept:
        first = skipped[0]
        raise ValueError(
            f"molecule source {str(path)!r} has no usable molecules: all {len(records)} "
            f"records were skipped (first: record {first.index} ({first.name}): {first.reason})."
        )
    if skipped:
        named = "; ".join(
            f"record {s.index} ({s.name}): {s.reason}" for s in skipped[:_NAMED_SKIPS]
        )
        more = f"; and {len(skipped) - _NAMED_SKIPS} more" if len(skipped) > _NAMED_SKIPS else ""
        warnings.warn(
            f"molecule source {str(path)!r}: skipped {len(skipped)} of {len(records)} records "
            f"({named}{more}).",
            UserWarning,
            stacklevel=2,
        )

    atom_types = wanted or tuple(sorted({int(v) for _, (z, _, _) in kept for v in z}))
    width = width or max(len(z) for _, (z, _, _) in kept)
    m = len(kept)
    data = {
        "positions": np.zeros((m, width, 3), np.float32),
        "charges": np.zeros((m, width), np.int32),
        "num_atoms": np.zeros(m, np.int32),
        "smiles": np.array([item[2] for _, item in kept], dtype=str),
        "index": np.array([k for k, _ in kept], np.int32),
    }
    for i, (_, (z, x, _)) in enumerate(kept):
        n = len(z)
        data["positions"][i, :n] = x
        data["charges"][i, :n] = z
        data["num_atoms"][i] = n
    parts = split_indices(m, fractions, seed)
    splits = {name: {key: v[idx] for key, v in data.items()} for name, idx in parts.items()}
    splits["all"] = data
    return MoleculeSource(str(path), splits, atom_types, width, tuple(skipped))


__all__ = [
    "ASE_SUFFIXES",
    "MoleculeSource",
    "SDF_SUFFIXES",
    "SOURCE_SPLITS",
    "SPLIT_FRACTIONS",
    "SkippedRecord",
    "XYZ_SUFFIXES",
    "check_split_fractions",
    "element_symbol",
    "load_molecule_source",
    "parse_elements",
    "smiles_from_xyz",
    "split_indices",
    "split_sizes",
]
