"""Bond-length tables and valences used to read bonds off 3D coordinates.

These are the numbers of the stability and validity metrics of EDM (Hoogeboom et al.,
2022, "Equivariant Diffusion for Molecule Generation in 3D"), taken as facts from their
public code, `qm9/bond_analyze.py` of `ehoogeboom/e3_diffusion_for_molecules` (which cites
wiredchemist.com's table of bond energies and lengths and chemistry-reference.com's "Bond
Lengths and Enthalpies"). Every later paper on QM9 / GEOM generation (SymDiff included)
reports its metrics with these tables, so they must not be "improved".

Lengths are typical bond lengths in picometres for unordered element pairs. A pair at
distance `d` (pm) has bond order

    0  if d >= single + 10
    1  if single + 10 > d and not (d < double + 5)
    2  if d < double + 5 and not (d < triple + 3)
    3  if d < triple + 3

where a missing double / triple entry means that order is impossible, and a pair missing
from the single table never bonds. An atom is stable when the sum of its bond orders equals
an allowed valence.

The source lists one double-bond entry, C-S 160 pm, only in one direction (under C); EDM's
GEOM code looks pairs up sorted as (C, S), so it acts as a symmetric entry, as here.
"""

from __future__ import annotations

import functools

import numpy as np

#: Element symbol -> atomic number for every element that appears in the tables.
ATOMIC_NUMBERS: dict[str, int] = {
    "H": 1, "B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "Al": 13, "Si": 14, "P": 15, "S": 16,
    "Cl": 17, "As": 33, "Br": 35, "I": 53, "Hg": 80, "Bi": 83,
}  # fmt: skip

#: Atomic number -> element symbol (inverse of `ATOMIC_NUMBERS`).
ELEMENT_SYMBOLS: dict[int, str] = {z: s for s, z in ATOMIC_NUMBERS.items()}

#: Typical single-bond lengths (pm), unordered pairs.
SINGLE_BOND_PM: dict[tuple[str, str], int] = {
    ("H", "H"): 74, ("H", "B"): 119, ("H", "C"): 109, ("H", "N"): 101, ("H", "O"): 96,
    ("H", "F"): 92, ("H", "Si"): 148, ("H", "P"): 144, ("H", "S"): 134, ("H", "Cl"): 127,
    ("H", "As"): 152, ("H", "Br"): 141, ("H", "I"): 161, ("B", "Cl"): 175, ("C", "C"): 154,
    ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135, ("C", "Si"): 185, ("C", "P"): 184,
    ("C", "S"): 182, ("C", "Cl"): 177, ("C", "Br"): 194, ("C", "I"): 214, ("N", "N"): 145,
    ("N", "O"): 140, ("N", "F"): 136, ("N", "P"): 177, ("N", "S"): 168, ("N", "Cl"): 175,
    ("N", "Br"): 214, ("N", "I"): 222, ("O", "O"): 148, ("O", "F"): 142, ("O", "Si"): 163,
    ("O", "P"): 163, ("O", "S"): 151, ("O", "Cl"): 164, ("O", "Br"): 172, ("O", "I"): 194,
    ("F", "F"): 142, ("F", "Si"): 160, ("F", "P"): 156, ("F", "S"): 158, ("F", "Cl"): 166,
    ("F", "Br"): 178, ("F", "I"): 187, ("Si", "Si"): 233, ("Si", "S"): 200, ("Si", "Cl"): 202,
    ("Si", "Br"): 215, ("Si", "I"): 243, ("P", "P"): 221, ("P", "S"): 210, ("P", "Cl"): 203,
    ("P", "Br"): 222, ("S", "S"): 204, ("S", "Cl"): 207, ("S", "Br"): 225, ("S", "I"): 234,
    ("Cl", "Cl"): 199, ("Cl", "Br"): 214, ("Br", "Br"): 228, ("I", "I"): 266,
}  # fmt: skip

#: Typical double-bond lengths (pm), unordered pairs.
DOUBLE_BOND_PM: dict[tuple[str, str], int] = {
    ("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("C", "S"): 160, ("N", "N"): 125,
    ("N", "O"): 121, ("O", "O"): 121, ("O", "P"): 150, ("P", "S"): 186,
}  # fmt: skip

#: Typical triple-bond lengths (pm), unordered pairs.
TRIPLE_BOND_PM: dict[tuple[str, str], int] = {
    ("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110,
}  # fmt: skip

#: Tolerances (pm) added to the single, double and triple lengths (EDM tuned them so that
#: the real QM9 molecules come out stable).
MARGINS_PM: tuple[int, int, int] = (10, 5, 3)

#: Allowed total bond order (valence) per element; a tuple lists several allowed values.
ALLOWED_VALENCE: dict[str, int | tuple[int, ...]] = {
    "H": 1, "C": 4, "N": 3, "O": 2, "F": 1, "B": 3, "Al": 3, "Si": 4, "P": (3, 5), "S": 4,
    "Cl": 1, "As": 3, "Br": 1, "I": 1, "Hg": (1, 2), "Bi": (3, 5),
}  # fmt: skip

#: Largest atomic number the lookup arrays cover.
MAX_ATOMIC_NUMBER: int = max(ATOMIC_NUMBERS.values())


def _pair_table(lengths: dict[tuple[str, str], int], margin: float) -> np.ndarray:
    size = MAX_ATOMIC_NUMBER + 1
    table = np.full((size, size), -np.inf)
    for (a, b), length in lengths.items():
        za, zb = ATOMIC_NUMBERS[a], ATOMIC_NUMBERS[b]
        table[za, zb] = table[zb, za] = length + margin
    return table


@functools.cache
def bond_thresholds_pm() -> np.ndarray:
    """Distance thresholds for bond orders 1, 2, 3, indexed by atomic numbers.

    Returns:
      `[3, Z + 1, Z + 1]` float64 (Z = `MAX_ATOMIC_NUMBER`): entry `[k - 1, z1, z2]` is the
      typical order-k length of the pair plus its margin, in pm; `-inf` where the pair has
      no order-k bond. Symmetric in `(z1, z2)`. Read-only.
    """
    tables = np.stack(
        [
            _pair_table(SINGLE_BOND_PM, MARGINS_PM[0]),
            _pair_table(DOUBLE_BOND_PM, MARGINS_PM[1]),
            _pair_table(TRIPLE_BOND_PM, MARGINS_PM[2]),
        ]
    )
    tables.flags.writeable = False
    return tables


@functools.cache
def allowed_valence_table() -> np.ndarray:
    """Allowed valences indexed by atomic number.

    Returns:
      `[Z + 1, K]` int array (K = the most alternatives any element has): row `z` lists the
      allowed total bond orders of element `z`, padded with -1; a row of -1 for atomic
      numbers outside the table. Read-only.
    """
    width = max(len(v) if isinstance(v, tuple) else 1 for v in ALLOWED_VALENCE.values())
    table = np.full((MAX_ATOMIC_NUMBER + 1, width), -1, dtype=np.int64)
    for symbol, valence in ALLOWED_VALENCE.items():
        values = valence if isinstance(valence, tuple) else (valence,)
        table[ATOMIC_NUMBERS[symbol], : len(values)] = values
    table.flags.writeable = False
    return table
