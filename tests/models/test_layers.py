"""Shared layers: the time input's accepted shapes and the initialisation of the linears."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.models.layers import mixed_precision, time_vector, xavier_linear


@pytest.mark.parametrize("t", [0.5, [0.5, 0.5, 0.5], [[0.5], [0.5], [0.5]]])
def test_time_vector_accepts_scalar_vector_and_column(t):
    out = time_vector(t, 3, jnp.float32)
    assert out.shape == (3,) and out.dtype == jnp.float32
    assert np.all(np.asarray(out) == 0.5)


def test_time_vector_rejects_a_wrong_batch():
    with pytest.raises(ValueError, match=r"\[B\] = \(3,\)"):
        time_vector(jnp.zeros(4), 3, jnp.float32)


def test_xavier_linear_zero_and_mixed_precision():
    rngs = nnx.Rngs(0)
    zero = xavier_linear(4, 5, rngs, jnp.float32, zero=True)
    assert np.all(np.asarray(zero.kernel[...]) == 0) and np.all(np.asarray(zero.bias[...]) == 0)
    plain = xavier_linear(4, 5, rngs, jnp.float32)
    limit = np.sqrt(6.0 / (4 + 5))  # Xavier-uniform bound
    kernel = np.asarray(plain.kernel[...])
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit
    half = xavier_linear(4, 5, rngs, jnp.float32, dtype=jnp.bfloat16)
    assert half(jnp.ones((2, 4))).dtype == jnp.float32
    assert mixed_precision(None, jnp.float32) == {}
