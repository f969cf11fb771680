"""Rotations acting on the positions of a state: arrays, tuples and dicts keep their shape."""

import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.groups import haar_o3
from symdiff_jax.symmetrise.actions import (
    get_positions,
    replace_positions,
    rotate_positions,
    rotation_action,
    transpose_rotation,
)


@pytest.mark.parametrize("kind", ["array", "tuple", "dict"])
def test_only_the_positions_rotate_and_the_container_is_kept(key, kind):
    x = jnp.arange(12.0).reshape(4, 3)
    h = jnp.ones((4, 2))
    state = {"array": x, "tuple": (x, h), "dict": {"x": x, "h": h}}[kind]
    r = haar_o3(key)
    out = rotate_positions(state, r)
    assert type(out) is type(state)
    np.testing.assert_allclose(get_positions(out), x @ r.T, rtol=1e-6)
    if kind != "array":
        np.testing.assert_array_equal(jnp.asarray(out[1] if kind == "tuple" else out["h"]), h)
    back = rotation_action(transpose_rotation(r), out)
    np.testing.assert_allclose(get_positions(back), x, atol=1e-5)
    np.testing.assert_array_equal(get_positions(replace_positions(state, 2 * x)), 2 * x)
