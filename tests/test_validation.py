"""Shape checks and the default mask."""

import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.validation import check_mask, check_points, check_rotation, default_mask


def test_default_mask_is_ones_in_the_dtype_of_x_or_the_given_mask_unchanged():
    x = jnp.zeros((2, 5, 3), jnp.bfloat16)
    ones = default_mask(x, None)
    assert ones.shape == (2, 5) and ones.dtype == jnp.bfloat16 and np.all(np.asarray(ones) == 1)
    mask = jnp.array([[1, 1, 0, 1, 0]] * 2, jnp.int32)
    assert default_mask(x, mask) is mask


def test_mismatched_shapes_are_refused_with_the_shapes_seen():
    with pytest.raises(ValueError, match=r"N = 5.*got mask of shape \(4,\)"):
        default_mask(jnp.zeros((5, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match="point cloud"):
        check_points(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        check_rotation(jnp.eye(2), 3)
    check_mask(jnp.zeros((5, 3)), None)
