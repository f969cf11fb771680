"""Network test helpers: the compiled call agrees with the eager one; the mask layouts."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from symdiff_jax.testing.modules import MASK_LAYOUTS, compiled_call


def test_compiled_call_matches_the_eager_call():
    layer = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(compiled_call(layer)(x)), np.asarray(layer(x)))


def test_mask_layouts_pad_six_atoms_differently():
    assert {k: sum(v) for k, v in MASK_LAYOUTS.items()} == {
        "full": 6,
        "trailing": 4,
        "interleaved": 4,
    }
    assert MASK_LAYOUTS["trailing"] != MASK_LAYOUTS["interleaved"]
    assert all(len(v) == 6 for v in MASK_LAYOUTS.values())
