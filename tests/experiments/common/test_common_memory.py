"""`experiments.common.memory`: sample counts checked against the memory available."""

import pytest

from experiments.common import memory


def test_molecule_sample_bytes_counts_every_array():
    # 2 copies x (12 + 4 + 4 + 4) bytes x 29 slots + 4 x 30 size logits per molecule.
    assert memory.molecule_sample_bytes(10, 29) == 10 * (2 * 24 * 29 + 120)


def test_a_count_that_does_not_fit_is_refused_naming_the_estimate():
    gib = 2**30
    memory.check_sample_memory(1000, 29, available=gib)
    with pytest.raises(MemoryError, match=r"--num_samples 1000000000 needs about 1408\.\d GiB"):
        memory.check_sample_memory(1_000_000_000, 29, available=64 * gib)
    assert memory.available_bytes() is None or memory.available_bytes() > 0
