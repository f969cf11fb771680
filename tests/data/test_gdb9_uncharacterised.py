import numpy as np

from symdiff_jax.data.gdb9_uncharacterised import uncharacterised_gdb9_indices


def test_indices_are_the_3054_sorted_distinct_gdb9_molecules():
    idx = uncharacterised_gdb9_indices()
    # QM9's uncharacterized.txt lists 3,054 molecules of the 133,885 in GDB-9.
    assert idx.shape == (3054,) and idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)
    assert 1 <= idx[0] and idx[-1] <= 133885
