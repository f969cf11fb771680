"""Writing generated (or dataset) molecules to files chemists and viewers can open.

Molecules come as a padded batch, as everywhere in symdiff_jax:

    positions       [B, N, 3]  Angstrom (numpy or JAX; `[N, 3]` for one molecule)
    atomic_numbers  [B, N]     integers (1 = H, 6 = C, ...), 0 = padding
    mask            [B, N]     nonzero for real atoms (None: atomic number > 0)

Formats:

- **SDF** (`write_sdf`): one record per molecule with a 3D conformer and the bonds read off
  the distances with EDM's rule, the same one the stability and validity metrics use
  (`symdiff_jax.metrics.stability.bond_orders`), so a viewer shows the graph the metrics
  judged. Molecules RDKit cannot sanitise are written unsanitised (atoms, coordinates and
  bond orders exactly as derived) rather than dropped, so record `i` is always sample `i`;
  the record's `sanitized` property says which (1 or 0).
- **XYZ** (`write_xyz` / `read_xyz`): atom count, comment line, `El x y z` lines; one file
  per molecule in a directory, or all molecules as consecutive frames of one `.xyz` file.
- **npz** (`write_samples_npz` / `load_samples_npz`): the arrays themselves plus any extra
  arrays (sampling settings, seeds, per-sample scores), without pickling.

Every writer writes to a temporary file in the destination directory and renames it over
the destination (`os.replace`), so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from symdiff_jax.data.atomic import atomic_write, write_npz_atomic
from symdiff_jax.metrics.bond_tables import ELEMENT_SYMBOLS
from symdiff_jax.metrics.rdkit_metrics import build_molecule, quiet_rdkit
from symdiff_jax.metrics.stability import CHUNK, as_molecule_batch, bond_orders_checked

#: Keys `write_samples_npz` reserves for the molecule arrays.
SAMPLE_KEYS: tuple[str, ...] = ("positions", "atomic_numbers", "mask")


def default_name(index: int) -> str:
    """Name of molecule `index` in files: `molecule_00000`, `molecule_00001`, ..."""
    return f"molecule_{index:05d}"


def _names(names: Sequence[str] | None, count: int) -> list[str]:
    if names is None:
        return [default_name(i) for i in range(count)]
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(
            f"names must give one name per molecule ({count}); got {len(names)} names."
        )
    for i, n in enumerate(names):
        if "\n" in n or "\r" in n:
            raise ValueError(f"names[{i}] = {n!r} contains a line break; use a single line.")
    return names


# --------------------------------------------------------------------------------------
# RDKit molecules


def molecules_to_rdkit(
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    *,
    limit_bonds_to_one: bool = False,
) -> list:
    """RDKit molecules with 3D conformers and EDM's distance-derived bonds.

    Args:
      positions: `[B, N, 3]` (or `[N, 3]`) coordinates in Angstrom.
      atomic_numbers: `[B, N]` (or `[N]`) integer atomic numbers, 0 = padding.
      mask: `[B, N]` (or `[N]`), nonzero for real atoms; None: atomic number > 0.
      limit_bonds_to_one: make every bond single (EDM's GEOM-Drugs validity setting).

    Returns:
      A list of B `rdkit.Chem.Mol`, never None: atom `k` of molecule `b` is the `k`-th real
      atom of row `b` (slot order), with its coordinates in conformer 0; bonds and orders
      follow `symdiff_jax.metrics.stability.bond_orders` (so they are the graph the
      stability / validity metrics see). Each molecule is sanitised when RDKit accepts it;
      otherwise it is kept unsanitised (property cache updated non-strictly so it can be
      written and drawn). The bool property `sanitized` says which; the int property
      `sample_index` is `b`. A molecule without atoms is an empty Mol.

    Raises:
      ValueError: wrong shapes, non-finite coordinates of a real atom, or a real atom with
        an atomic number outside the bond tables (the message names the value, the
        molecule and the atom index).
    """
    from rdkit.Geometry import Point3D

    x, z, m = as_molecule_batch(positions, atomic_numbers, mask)
    out = []
    _blocker = quiet_rdkit()  # noqa: F841 - active until it goes out of scope
    for s in range(0, x.shape[0], CHUNK):
        sl = slice(s, s + CHUNK)
        orders = bond_orders_checked(x[sl], z[sl], m[sl], limit_bonds_to_one)
        for b, (xb, zb, mb, ob) in enumerate(zip(x[sl], z[sl], m[sl], orders, strict=True)):
            keep = np.flatnonzero(mb)
            rw = build_molecule(zb[keep], ob[np.ix_(keep, keep)])
            conf = Chem.Conformer(len(keep))
            for k, xyz in enumerate(xb[keep].astype(np.float64).tolist()):
                conf.SetAtomPosition(k, Point3D(*xyz))
            conf.Set3D(True)
            rw.AddConformer(conf, assignId=True)
            mol = rw.GetMol()
            try:
                candidate = Chem.Mol(mol)
                Chem.SanitizeMol(candidate)
                mol, ok = candidate, True
            except (ValueError, RuntimeError):
                mol.UpdatePropertyCache(strict=False)
                ok = False
            mol.SetBoolProp("sanitized", ok)
            mol.SetIntProp("sample_index", s + b)
            out.append(mol)
    return out


# --------------------------------------------------------------------------------------
# SDF


def write_sdf(
    path: str | os.PathLike,
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    *,
    names: Sequence[str] | None = None,
    limit_bonds_to_one: bool = False,
) -> int:
    """Writes molecules to one SDF file (V2000 mol blocks, 4 decimals in Angstrom).

    Args:
      path: destination `.sdf` file (parent directories are created; overwritten
        atomically).
      positions, atomic_numbers, mask: the batch, as `molecules_to_rdkit`.
      names: one title per molecule (first line of each record); default
        `molecule_00000`, ...
      limit_bonds_to_one: every bond single (EDM's GEOM-Drugs setting).

    Returns:
      The number of records written (= B; unsanitisable molecules are written too, with
      property `sanitized` 0). Records carry the properties `sample_index`, `num_atoms`
      and `sanitized`.

    Raises:
      ValueError: as `molecules_to_rdkit`, or `names` of the wrong length.

    Example:
      >>> from rdkit import Chem                                       # doctest: +SKIP
      >>> write_sdf("samples.sdf", x, z, mask)                         # doctest: +SKIP
      >>> mols = list(Chem.SDMolSupplier("samples.sdf", sanitize=False))  # doctest: +SKIP
    """
    mols = molecules_to_rdkit(
        positions, atomic_numbers, mask, limit_bonds_to_one=limit_bonds_to_one
    )
    titles = _names(names, len(mols))

    def write(tmp: str) -> None:
        writer = Chem.SDWriter(tmp)
        try:
            for mol, title in zip(mols, titles, strict=True):
                mol.SetProp("_Name", title)
                mol.SetIntProp("num_atoms", mol.GetNumAtoms())
                mol.SetIntProp("sanitized", int(mol.GetBoolProp("sanitized")))
                writer.write(mol)
        finally:
            writer.close()

    _blocker = quiet_rdkit()  # noqa: F841 - active until it goes out of scope
    atomic_write(path, write, ".sdf")
    return len(mols)


# --------------------------------------------------------------------------------------
# XYZ


def _xyz_frame(symbols: Sequence[str], coords: np.ndarray, comment: str) -> str:
    lines = [str(len(symbols)), comment]
    lines += [
        f"{s:<2s} {c[0]:15.8f} {c[1]:15.8f} {c[2]:15.8f}"
        for s, c in zip(symbols, coords.tolist(), strict=True)
    ]
    return "\n".join(lines) + "\n"


def write_xyz(
    directory_or_path: str | os.PathLike,
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    *,
    names: Sequence[str] | None = None,
) -> list[str]:
    """Writes molecules in the standard XYZ format (Angstrom, 8 decimals).

    Each molecule is a frame: the atom count, a comment line (the molecule's name), then
    one `El x y z` line per real atom (slot order).

    Args:
      directory_or_path: a path ending in `.xyz` receives all molecules as consecutive
        frames of one file (multi-frame XYZ, as ASE / VMD / Avogadro read it); any other
        path is a directory (created if needed) that receives one file per molecule,
        `<name>.xyz`, by default `molecule_00000.xyz`, ...
      positions, atomic_numbers, mask: the batch, as `molecules_to_rdkit`.
      names: one name per molecule (comment line and, in directory mode, file name);
        default `molecule_00000`, ...

    Returns:
      The paths written, as strings.

    Raises:
      ValueError: as `as_molecule_batch` (shapes, unknown atomic numbers naming value and
        molecule), `names` of the wrong length, or names that are not usable as file names.
    """
    x, z, m = as_molecule_batch(positions, atomic_numbers, mask)
    titles = _names(names, x.shape[0])
    frames = []
    for xb, zb, mb, title in zip(x, z, m, titles, strict=True):
        keep = np.flatnonzero(mb)
        symbols = [ELEMENT_SYMBOLS[int(v)] for v in zb[keep]]
        frames.append(_xyz_frame(symbols, xb[keep].astype(np.float64), title))

    target = Path(directory_or_path).expanduser()

    def writer(text: str) -> Callable[[str], None]:
        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        return write

    if target.suffix.lower() == ".xyz":
        return [atomic_write(target, writer("".join(frames)), ".xyz")]
    if target.exists() and not target.is_dir():
        raise ValueError(
            f"{str(target)!r} is an existing file without the .xyz suffix; give a directory "
            f"(one file per molecule) or a path ending in .xyz (one multi-frame file)."
        )
    if len(set(titles)) != len(titles):
        raise ValueError("names must be distinct in directory mode (they are the file names).")
    for title in titles:
        if not title or "/" in title or "\\" in title or title in (".", ".."):
            raise ValueError(f"name {title!r} cannot be a file name; pass plain names.")
    return [
        atomic_write(target / f"{title}.xyz", writer(frame), ".xyz")
        for title, frame in zip(titles, frames, strict=True)
    ]


@functools.lru_cache(maxsize=1)
def _symbol_table() -> dict[str, int]:
    """Element symbol -> atomic number for elements 1..118 (RDKit's periodic table)."""
    table = Chem.GetPeriodicTable()
    return {table.GetElementSymbol(z): z for z in range(1, 119)}


def _symbol_to_z(symbol: str, where: str) -> int:
    z = _symbol_table().get(symbol.capitalize())
    if z is None:
        raise ValueError(f"{where}: unknown element symbol {symbol!r}.")
    return z


def _parse_xyz_text(text: str, where: str) -> list[tuple[str, list[int], np.ndarray]]:
    lines = text.splitlines()
    frames = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            raise ValueError(
                f"{where}, line {i + 1}: expected the atom count of an XYZ frame; got {lines[i]!r}."
            ) from None
        if i + 2 + n > len(lines):
            raise ValueError(
                f"{where}, line {i + 1}: the frame announces {n} atoms but the file ends after "
                f"{len(lines) - i - 2} more lines."
            )
        comment = lines[i + 1]
        zs, coords = [], []
        for k in range(i + 2, i + 2 + n):
            parts = lines[k].split()
            if len(parts) < 4:
                raise ValueError(f"{where}, line {k + 1}: expected 'El x y z'; got {lines[k]!r}.")
            zs.append(_symbol_to_z(parts[0], f"{where}, line {k + 1}"))
            coords.append([float(v) for v in parts[1:4]])
        frames.append((comment, zs, np.array(coords, np.float64).reshape(n, 3)))
        i += 2 + n
    return frames


def read_xyz(path: str | os.PathLike) -> dict[str, Any]:
    """Reads XYZ files back into a padded batch.

    Args:
      path: one `.xyz` file (one or more frames), or a directory whose `*.xyz` files are
        read in sorted name order (as `write_xyz` writes them).

    Returns:
      `{"positions": [B, N, 3] float64, "atomic_numbers": [B, N] int64 (0 = padding),
      "mask": [B, N] bool, "comments": list of B comment lines}`, `N` the largest frame.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: a malformed frame or an unknown element symbol (names file and line).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"XYZ path {str(path)!r} does not exist.")
    files = sorted(path.glob("*.xyz")) if path.is_dir() else [path]
    frames = []
    for f in files:
        frames += _parse_xyz_text(f.read_text(encoding="utf-8"), str(f))
    width = max((len(zs) for _, zs, _ in frames), default=0)
    b = len(frames)
    positions = np.zeros((b, width, 3), np.float64)
    numbers = np.zeros((b, width), np.int64)
    mask = np.zeros((b, width), bool)
    for i, (_, zs, coords) in enumerate(frames):
        n = len(zs)
        positions[i, :n] = coords
        numbers[i, :n] = zs
        mask[i, :n] = True
    return {
        "positions": positions,
        "atomic_numbers": numbers,
        "mask": mask,
        "comments": [c for c, _, _ in frames],
    }


# --------------------------------------------------------------------------------------
# npz


def write_samples_npz(
    path: str | os.PathLike,
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    **extra: Any,
) -> str:
    """Saves a batch of molecules (and extra arrays) to an uncompressed `.npz` file.

    Args:
      path: destination file (`.npz` is appended by numpy if missing, so pass it);
        written atomically.
      positions, atomic_numbers, mask: the batch, checked as `molecules_to_rdkit`.
        Positions keep their floating dtype (padded slots as given); atomic numbers are
        stored as int32 with 0 on padding; the mask as bool.
      **extra: further arrays (numpy / JAX / scalars / lists of numbers or strings), e.g.
        `seed=0, num_steps=1000, stable=stable_mask`. Object arrays are refused (they would
        need pickling).

    Returns:
      The path written.

    Raises:
      ValueError: as `as_molecule_batch`, or an extra that is not a plain numeric /
        string / bool array.
    """
    x, z, m = as_molecule_batch(positions, atomic_numbers, mask)
    arrays: dict[str, np.ndarray] = {
        "positions": x,
        "atomic_numbers": z.astype(np.int32),
        "mask": m,
    }
    for key, value in extra.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(
                f"extra array {key!r} has dtype object (mixed or ragged values), which npz "
                f"can only store by pickling; pass a numeric, bool or string array."
            )
        arrays[key] = arr
    target = Path(path).expanduser()
    if target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")
    return write_npz_atomic(target, arrays)


def load_samples_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads a file written by `write_samples_npz` (no pickle).

    Returns:
      `{"positions": [B, N, 3], "atomic_numbers": [B, N] int32, "mask": [B, N] bool, ...}`
      plus the extra arrays under their names.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the file lacks one of `SAMPLE_KEYS`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"samples file {str(path)!r} does not exist.")
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    missing = [k for k in SAMPLE_KEYS if k not in data]
    if missing:
        raise ValueError(
            f"{path} is not a samples file written by write_samples_npz: keys {missing} are "
            f"missing (found {sorted(data)})."
        )
    return data


__all__ = [
    "SAMPLE_KEYS",
    "default_name",
    "load_samples_npz",
    "molecules_to_rdkit",
    "read_xyz",
    "write_samples_npz",
    "write_sdf",
    "write_xyz",
]
