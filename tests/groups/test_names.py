"""Group names: one table, one check, errors that name the choices."""

import pytest

from symdiff_jax.groups import GROUP_DIMS, check_group_dimension, check_group_name, sample_group


def test_every_name_samples_matrices_of_its_dimension(key):
    for name, dim in GROUP_DIMS.items():
        assert check_group_name(name) == dim
        assert sample_group(key, name, (2,)).shape == (2, dim, dim)
        assert check_group_dimension(name, (5, 4, dim)) == dim


def test_unknown_names_and_wrong_dimensions_are_refused():
    with pytest.raises(ValueError, match=r"Unknown group 'E3'.*'O3'.* or None"):
        check_group_name("E3", "or None")
    with pytest.raises(ValueError, match=r"dimension 2.*got shape \(4, 3\)"):
        check_group_dimension("SO2", (4, 3))
    with pytest.raises(ValueError, match=r"\[\.\.\., N, 3\]"):
        check_group_dimension("O3", (3,))
