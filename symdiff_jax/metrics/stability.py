"""Atom and molecule stability of 3D molecules, as EDM defines them.

EDM (Hoogeboom et al., 2022, section 5.2 and their `qm9/analyze.py`): bonds are read off
pairwise distances with the tables of `bond_tables` (single / double / triple lengths plus
margins of 10 / 5 / 3 pm); an atom is *stable* when the sum of the orders of its bonds
equals an allowed valence (H 1, C 4, N 3, O 2, F 1, ...); a molecule is stable when all its
atoms are. Atom stability is the fraction of stable atoms over all atoms of all molecules,
molecule stability the fraction of stable molecules.

Everything here is vectorised over molecules and atom pairs with numpy (no Python loop per
pair or per molecule); batches are processed in chunks to bound memory. Distances are taken
in the floating dtype of the positions (float32 positions give EDM's float32 arithmetic).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symdiff_jax.metrics.bond_tables import (
    ELEMENT_SYMBOLS,
    MAX_ATOMIC_NUMBER,
    allowed_valence_table,
    bond_thresholds_pm,
)

#: Molecules per block of the vectorised bond and stability checks (bounds memory).
CHUNK = 1024


def _element_name(z: int) -> str:
    if z in ELEMENT_SYMBOLS:
        return ELEMENT_SYMBOLS[z]
    try:
        from rdkit import Chem

        return Chem.GetPeriodicTable().GetElementSymbol(int(z))
    except Exception:  # noqa: BLE001 - only used to word an error message
        return "?"


def as_molecule_batch(
    positions: Any, atomic_numbers: Any, mask: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checks and converts a batch of molecules to numpy.

    Args:
      positions: `[B, N, 3]` (or one molecule `[N, 3]`) coordinates in Angstrom; numpy or
        JAX arrays.
      atomic_numbers: `[B, N]` (or `[N]`) integer atomic numbers (1 = H, 6 = C, ...).
      mask: `[B, N]` (or `[N]`), nonzero for real atoms. `None` means every atom with a
        positive atomic number is real.

    Returns:
      `(positions [B, N, 3] float, atomic_numbers [B, N] int64, mask [B, N] bool)`; atomic
      numbers are set to 0 on padded slots.

    Raises:
      ValueError: wrong shapes, non-finite coordinates of real atoms, or a real atom whose
        element is not in the bond tables (names the element, molecule and atom index).
    """
    x = np.asarray(positions)
    z = np.asarray(atomic_numbers)
    if x.ndim == 2:
        x, z = x[None], z[None]
        mask = None if mask is None else np.asarray(mask)[None]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(
            f"positions must have shape [B, N, 3] (or [N, 3]) in Angstrom; got shape {x.shape}."
        )
    if z.shape != x.shape[:2]:
        raise ValueError(
            f"atomic_numbers must have shape [B, N] = {x.shape[:2]} matching positions of shape "
            f"{x.shape}; got shape {z.shape}."
        )
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if np.issubdtype(z.dtype, np.floating):
        if not np.all(z == np.round(z)):
            raise ValueError(
                "atomic_numbers must be integers (atomic numbers, not one-hot or scaled "
                "features); decode features first, e.g. with "
                "symdiff_jax.data.atomic_numbers_from_features."
            )
    z = z.astype(np.int64)
    m = (z > 0) if mask is None else (np.asarray(mask) > 0)
    if m.shape != z.shape:
        raise ValueError(
            f"mask must have shape [B, N] = {z.shape} matching atomic_numbers; got shape {m.shape}."
        )
    z = np.where(m, z, 0)
    known = allowed_valence_table()[:, 0] > 0
    bad = m & ~known[np.clip(z, 0, MAX_ATOMIC_NUMBER)]
    bad |= m & ((z < 1) | (z > MAX_ATOMIC_NUMBER))
    if bad.any():
        b, i = (int(v) for v in np.argwhere(bad)[0])
        zi = int(z[b, i])
        raise ValueError(
            f"molecule {b}, atom {i} has atomic number {zi} ({_element_name(zi)}), which the "
            f"bond tables do not cover (known: {sorted(ELEMENT_SYMBOLS.values())}); a masked "
            f"real atom needs a known element (atomic number 0 marks padding only when its "
            f"mask is 0)."
        )
    if not np.all(np.isfinite(x[m])):
        b = int(np.argwhere(~np.isfinite(x).all(-1) & m)[0, 0])
        raise ValueError(f"molecule {b} has non-finite coordinates on a real atom.")
    return x, z, m


def pairwise_distances(positions: np.ndarray) -> np.ndarray:
    """Euclidean distances `[B, N, N]` between atoms of `positions [B, N, 3]`.

    Computed from coordinate differences (not the Gram-matrix shortcut) in the dtype of
    `positions`, summing the three squared components in x, y, z order.
    """
    d = positions[..., :, None, :] - positions[..., None, :, :]
    return np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2])


def bond_orders_checked(
    x: np.ndarray, z: np.ndarray, m: np.ndarray, limit_bonds_to_one: bool
) -> np.ndarray:
    """EDM's bond orders `[B, N, N]` of already validated host arrays (no shape checks).

    `x [B, N, 3]` in Angstrom, `z [B, N]` atomic numbers, `m [B, N]` real atoms; see
    `bond_orders` for the rule.
    """
    dist_pm = pairwise_distances(x) * x.dtype.type(100)
    thr = bond_thresholds_pm().astype(x.dtype)
    zi, zj = z[:, :, None], z[:, None, :]
    below = [dist_pm < thr[k][zi, zj] for k in range(3)]
    order = below[0] * (1 + below[1] * (1 + below[2].astype(np.int8)))
    if limit_bonds_to_one:
        order = order > 0
    n = z.shape[1]
    pair = m[:, :, None] & m[:, None, :] & ~np.eye(n, dtype=bool)
    return np.where(pair, order, 0).astype(np.int8)


def bond_orders(
    positions: Any, atomic_numbers: Any, mask: Any = None, *, limit_bonds_to_one: bool = False
) -> np.ndarray:
    """Bond orders read off distances with EDM's tables (`bond_tables` module docstring).

    Args:
      positions: `[B, N, 3]` or `[N, 3]` coordinates in Angstrom.
      atomic_numbers: `[B, N]` or `[N]` integer atomic numbers.
      mask: `[B, N]` or `[N]`, nonzero for real atoms (`None`: atomic number > 0).
      limit_bonds_to_one: report every bond as order 1 (EDM's GEOM-Drugs validity setting).

    Returns:
      `[B, N, N]` int8 symmetric bond orders in {0, 1, 2, 3}, zero on the diagonal and on
      padded atoms (a leading batch axis is added for a single molecule).
    """
    x, z, m = as_molecule_batch(positions, atomic_numbers, mask)
    out = np.zeros(z.shape + z.shape[-1:], np.int8)
    for s in range(0, x.shape[0], CHUNK):
        sl = slice(s, s + CHUNK)
        out[sl] = bond_orders_checked(x[sl], z[sl], m[sl], limit_bonds_to_one)
    return out


def _stable_atoms_checked(x: np.ndarray, z: np.ndarray, m: np.ndarray) -> np.ndarray:
    valence = bond_orders_checked(x, z, m, False).sum(-1, dtype=np.int64)
    allowed = allowed_valence_table()[z]
    return m & np.any(valence[..., None] == allowed, axis=-1)


def stable_atoms(positions: Any, atomic_numbers: Any, mask: Any = None) -> np.ndarray:
    """Which atoms are stable: their bond-order sum equals an allowed valence (EDM).

    Args: as `bond_orders`.

    Returns:
      `[B, N]` bool, False on padded atoms.
    """
    x, z, m = as_molecule_batch(positions, atomic_numbers, mask)
    out = np.zeros(z.shape, bool)
    for s in range(0, x.shape[0], CHUNK):
        sl = slice(s, s + CHUNK)
        out[sl] = _stable_atoms_checked(x[sl], z[sl], m[sl])
    return out


def stability(positions: Any, atomic_numbers: Any, mask: Any = None) -> dict[str, float]:
    """Atom and molecule stability of a batch of molecules (EDM, Hoogeboom et al. 2022).

    Args:
      positions: `[B, N, 3]` coordinates in Angstrom (numpy or JAX; `[N, 3]` for one
        molecule). float32 reproduces EDM's arithmetic exactly.
      atomic_numbers: `[B, N]` integer atomic numbers (H 1, C 6, N 7, O 8, F 9; any element
        of `bond_tables.ATOMIC_NUMBERS` is accepted).
      mask: `[B, N]`, nonzero for real atoms; `None` treats atomic number 0 as padding.

    Returns:
      `{"atom_stability": stable atoms / all real atoms, "molecule_stability": molecules
      whose atoms are all stable / B}`, plain floats in [0, 1]. A molecule with no atoms
      counts as stable (it has no unstable atom); an empty batch gives NaN.

    Raises:
      ValueError: see `as_molecule_batch`.

    Example:
      >>> import numpy as np
      >>> water = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
      >>> stability(water, np.array([8, 1, 1]))
      {'atom_stability': 1.0, 'molecule_stability': 1.0}
    """
    x, z, m = as_molecule_batch(positions, atomic_numbers, mask)
    n_stable_atoms = 0
    n_atoms = 0
    n_stable_molecules = 0
    for s in range(0, x.shape[0], CHUNK):
        sl = slice(s, s + CHUNK)
        ok = _stable_atoms_checked(x[sl], z[sl], m[sl])
        n_stable_atoms += int(ok.sum())
        n_atoms += int(m[sl].sum())
        n_stable_molecules += int(np.all(ok | ~m[sl], axis=-1).sum())
    num_molecules = x.shape[0]
    return {
        "atom_stability": n_stable_atoms / n_atoms if n_atoms else float("nan"),
        "molecule_stability": (
            n_stable_molecules / num_molecules if num_molecules else float("nan")
        ),
    }
