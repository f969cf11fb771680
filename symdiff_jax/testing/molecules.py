"""Hand-built small molecules (Angstrom) and their padded batch, for metric tests.

Each molecule is a pair `(positions [n, 3], atomic_numbers [n])` with textbook bond
lengths and angles, so that any chemist would draw the same bonds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Unit vectors to the corners of a regular tetrahedron.
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)


def methane(ch: float = 1.09) -> tuple[np.ndarray, np.ndarray]:
    """CH4 with C-H bonds of length `ch` (Angstrom)."""
    return np.vstack([np.zeros(3), ch * TETRAHEDRON]), np.array([6, 1, 1, 1, 1])


def water() -> tuple[np.ndarray, np.ndarray]:
    """H2O: O-H 0.96 Angstrom, H-O-H angle 104.5 degrees."""
    angle = np.deg2rad(104.5)
    pos = np.array([[0, 0, 0], [0.96, 0, 0], [0.96 * np.cos(angle), 0.96 * np.sin(angle), 0]])
    return pos, np.array([8, 1, 1])


def ethylene() -> tuple[np.ndarray, np.ndarray]:
    """C2H4, planar: C=C 1.33, C-H 1.09 Angstrom, H-C-C angles 120 degrees."""
    cc, ch = 1.33, 1.09
    s, c = np.sin(np.deg2rad(60)), np.cos(np.deg2rad(60))
    pos = [[-cc / 2, 0, 0], [cc / 2, 0, 0]]
    pos += [[-cc / 2 - ch * c, sgn * ch * s, 0] for sgn in (1, -1)]
    pos += [[cc / 2 + ch * c, sgn * ch * s, 0] for sgn in (1, -1)]
    return np.array(pos), np.array([6, 6, 1, 1, 1, 1])


def pad_molecules(
    molecules: Sequence[tuple[np.ndarray, np.ndarray]], width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacks `(positions, atomic_numbers)` pairs into a zero-padded batch.

    Args:
      molecules: B pairs `(positions [n_b, 3], atomic_numbers [n_b])`, `n_b <= width`.
      width: N, atoms per row of the batch.

    Returns:
      `(x [B, N, 3] float64, z [B, N] int, mask [B, N] bool)`, `mask = z > 0`.
    """
    b = len(molecules)
    x, z = np.zeros((b, width, 3)), np.zeros((b, width), int)
    for i, (p, zi) in enumerate(molecules):
        x[i, : len(zi)], z[i, : len(zi)] = p, zi
    return x, z, z > 0
