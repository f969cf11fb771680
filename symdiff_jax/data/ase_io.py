"""Molecules to and from ASE (the Atomic Simulation Environment), an optional extra.

ASE is not a dependency of symdiff_jax; install it with `pip install -e ".[ase]"` (or
`pip install ase`). Only the functions here import it, and only when called.

Molecules come as a padded batch, as everywhere in symdiff_jax: `positions [B, N, 3]`
Angstrom, atomic numbers `[B, N]` (0 = padding) and an optional mask `[B, N]`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from symdiff_jax.metrics.stability import as_molecule_batch

#: What a user without ASE is told to run.
ASE_INSTALL_HINT: str = 'pip install -e ".[ase]" (or pip install ase)'


def import_ase() -> Any:
    """The `ase` module, or an ImportError whose one line says how to install it."""
    try:
        import ase
        import ase.db  # noqa: F401 - the database submodule is used by the callers
    except ImportError:
        raise ImportError(f"ASE is not installed; install it with {ASE_INSTALL_HINT}.") from None
    return ase


def to_ase_atoms(positions: Any, charges: Any, mask: Any = None) -> list:
    """One `ase.Atoms` per molecule of a padded batch.

    Args:
      positions: `[B, N, 3]` (or `[N, 3]`) coordinates in Angstrom (numpy or JAX).
      charges: `[B, N]` (or `[N]`) atomic numbers, 0 = padding.
      mask: `[B, N]` (or `[N]`), nonzero for real atoms; None: atomic number > 0.

    Returns:
      A list of B `ase.Atoms` (no cell, no periodicity) holding the real atoms in slot
      order; a molecule without atoms is an empty `Atoms`.

    Raises:
      ImportError: ASE is not installed (the message says how to install it).
      ValueError: as `symdiff_jax.metrics.stability.as_molecule_batch` (shapes, non-finite
        coordinates, unknown atomic numbers).
    """
    ase = import_ase()
    x, z, m = as_molecule_batch(positions, charges, mask)
    out = []
    for xb, zb, mb in zip(x, z, m, strict=True):
        keep = np.flatnonzero(mb)
        out.append(ase.Atoms(numbers=zb[keep].tolist(), positions=xb[keep].astype(np.float64)))
    return out


def write_ase_db(
    path: str | os.PathLike,
    positions: Any,
    charges: Any,
    mask: Any = None,
    *,
    append: bool = False,
) -> int:
    """Writes molecules to an ASE database (`ase.db`, SQLite for a `.db` path).

    Args:
      path: the database file (`.db`); parent directories are created.
      positions, charges, mask: the batch, as `to_ase_atoms`.
      append: add rows to an existing database instead of replacing it.

    Returns:
      The number of rows written (= B); row `i + 1` of a new database is molecule `i`, with
      the key-value pair `sample_index=i`.

    Raises:
      ImportError: ASE is not installed.
      ValueError: as `to_ase_atoms`.
    """
    ase = import_ase()
    atoms = to_ase_atoms(positions, charges, mask)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not append:
        path.unlink()
    with ase.db.connect(str(path)) as db:
        for i, a in enumerate(atoms):
            db.write(a, sample_index=i)
    return len(atoms)


def read_ase_db(path: str | os.PathLike) -> list[tuple[str, Any]]:
    """The molecules of an ASE database, row by row, in id order.

    Args:
      path: an existing ASE database file.

    Returns:
      A list of `(name, item)`, `name` = `"row <id>"`; `item` is `(atomic_numbers [n] int,
      positions [n, 3] float64 Angstrom)`, or the exception raised while reading that row.

    Raises:
      ImportError: ASE is not installed.
      FileNotFoundError: `path` does not exist.
    """
    ase = import_ase()
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"ASE database {str(path)!r} does not exist.")
    out: list[tuple[str, Any]] = []
    db = ase.db.connect(str(path))
    for row in db.select():
        try:
            a = row.toatoms()
            item: Any = (np.asarray(a.numbers), np.asarray(a.positions, np.float64))
        except Exception as err:  # noqa: BLE001 - a bad row is reported, not fatal
            item = err
        out.append((f"row {row.id}", item))
    return out


__all__ = ["ASE_INSTALL_HINT", "import_ase", "read_ase_db", "to_ase_atoms", "write_ase_db"]
