import numpy as np
import pytest

from symdiff_jax.metrics.bond_tables import (
    ALLOWED_VALENCE,
    ATOMIC_NUMBERS,
    DOUBLE_BOND_PM,
    MAX_ATOMIC_NUMBER,
    SINGLE_BOND_PM,
    TRIPLE_BOND_PM,
    allowed_valence_table,
    bond_thresholds_pm,
)

HYDROGEN, C, N, OXYGEN = 1, 6, 7, 8


def test_thresholds_hand_values():
    # EDM's bond_analysis.py: C-H single 109 pm + margin1 10; C=O double 120 + 5;
    # C#N triple 116 + 3; no H=H double bond.
    t = bond_thresholds_pm()
    assert t.shape == (3, MAX_ATOMIC_NUMBER + 1, MAX_ATOMIC_NUMBER + 1)
    assert t[0, C, HYDROGEN] == t[0, HYDROGEN, C] == 119
    assert t[1, C, OXYGEN] == t[1, OXYGEN, C] == 125
    assert t[2, C, N] == t[2, N, C] == 119
    assert t[1, HYDROGEN, HYDROGEN] == -np.inf


@pytest.mark.parametrize(
    "order, lengths", [(0, SINGLE_BOND_PM), (1, DOUBLE_BOND_PM), (2, TRIPLE_BOND_PM)]
)
def test_thresholds_are_symmetric_and_cover_exactly_the_listed_pairs(order, lengths):
    t = bond_thresholds_pm()[order]
    np.testing.assert_array_equal(t, t.T)
    listed = {frozenset((ATOMIC_NUMBERS[a], ATOMIC_NUMBERS[b])) for a, b in lengths}
    finite = {frozenset((int(i), int(j))) for i, j in np.argwhere(np.isfinite(t))}
    assert finite == listed


def test_valence_table_rows():
    v = allowed_valence_table()
    assert v.shape[0] == MAX_ATOMIC_NUMBER + 1
    for symbol, valence in ALLOWED_VALENCE.items():
        values = valence if isinstance(valence, tuple) else (valence,)
        row = v[ATOMIC_NUMBERS[symbol]]
        assert tuple(row[: len(values)]) == values
        assert np.all(row[len(values) :] == -1)
    assert v[C, 0] == 4 and v[N, 0] == 3 and v[OXYGEN, 0] == 2 and v[HYDROGEN, 0] == 1
    assert np.all(v[2] == -1)  # helium: no entry


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        bond_thresholds_pm()[0, C, HYDROGEN] = 0.0
    with pytest.raises(ValueError):
        allowed_valence_table()[C, 0] = 0
