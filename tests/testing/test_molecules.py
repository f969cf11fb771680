"""Hand-built molecules: textbook geometry, and the padded batch they are stacked into."""

from __future__ import annotations

import numpy as np
import pytest

from symdiff_jax.testing.molecules import ethylene, methane, pad_molecules, water


def _distance(pos, i, j):
    return float(np.linalg.norm(pos[i] - pos[j]))


def test_geometry_is_textbook():
    pos, z = methane(1.2)
    assert list(z) == [6, 1, 1, 1, 1]
    assert [_distance(pos, 0, k) for k in range(1, 5)] == pytest.approx([1.2] * 4)
    assert _distance(pos, 1, 2) == pytest.approx(1.2 * np.sqrt(8 / 3))  # tetrahedral H-H
    pos, z = water()
    assert list(z) == [8, 1, 1]
    u, v = pos[1] - pos[0], pos[2] - pos[0]
    cos = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
    assert np.degrees(np.arccos(cos)) == pytest.approx(104.5)
    pos, z = ethylene()
    assert list(z) == [6, 6, 1, 1, 1, 1]
    assert _distance(pos, 0, 1) == pytest.approx(1.33)
    assert [_distance(pos, 0, 2), _distance(pos, 1, 4)] == pytest.approx([1.09, 1.09])


def test_pad_molecules_keeps_atoms_and_zeroes_padding():
    mols = [water(), methane()]
    x, z, mask = pad_molecules(mols, 6)
    assert x.shape == (2, 6, 3) and z.shape == (2, 6) and mask.dtype == bool
    for b, (pos, zs) in enumerate(mols):
        n = len(zs)
        np.testing.assert_array_equal(x[b, :n], pos)
        np.testing.assert_array_equal(z[b, :n], zs)
        assert not x[b, n:].any() and not z[b, n:].any()
        assert list(mask[b]) == [True] * n + [False] * (6 - n)
