"""The conditional velocity generates the conditional path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.flow_matching import conditional_path, conditional_velocity, prior_sample


@pytest.mark.parametrize("sigma_min", [0.0, 0.01])
def test_velocity_is_time_derivative_of_path(key, sigma_min, x64):
    x0 = prior_sample(key, (3, 4, 2))
    x1 = prior_sample(jax.random.fold_in(key, 1), (3, 4, 2))
    t = jnp.array([0.1, 0.5, 0.8])
    x_t, dx = jax.jvp(lambda s: conditional_path(x0, x1, s, sigma_min), (t,), (jnp.ones(3),))
    np.testing.assert_allclose(conditional_velocity(x_t, x1, t, sigma_min), dx, atol=1e-10)
    np.testing.assert_allclose(conditional_path(x0, x1, 1.0, sigma_min), x1 + sigma_min * x0)
