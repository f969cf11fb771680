"""randomise_parameters: every parameter replaced, in place, with the asked scale."""

import jax
import numpy as np
from flax import nnx

from symdiff_jax.testing import randomise_parameters


def test_every_parameter_is_replaced_with_the_given_scale():
    model = nnx.Linear(50, 40, rngs=nnx.Rngs(0))  # bias starts at exactly 0
    out = randomise_parameters(model, jax.random.key(1), scale=0.5)
    assert out is model
    bias, kernel = np.asarray(model.bias[...]), np.asarray(model.kernel[...])
    assert np.all(bias != 0)
    # 2000 N(0, 0.25) draws: the sample std lies within 10% of 0.5 (about 6 standard errors).
    assert abs(kernel.std() - 0.5) < 0.05
    again = randomise_parameters(nnx.Linear(50, 40, rngs=nnx.Rngs(0)), jax.random.key(1), 0.5)
    np.testing.assert_array_equal(np.asarray(again.kernel[...]), kernel)
