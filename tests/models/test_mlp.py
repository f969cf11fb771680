"""Tests of symdiff_jax.models.mlp: the odd (reflection-equivariant) toy denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.models.mlp import ReflectionDenoiser, TimeMLP, odd_symmetrise


def _numpy_mlp(model: TimeMLP, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Independent float64 numpy forward pass of `TimeMLP` from its parameter arrays."""
    h = np.concatenate([x, t[..., None]], axis=-1).astype(np.float64)
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)
        if i < len(layers) - 1:
            h = np.tanh(h)
    return h


def test_paper_layer_sizes(key):
    """f is 2 -> 10 -> 5 -> 1 for d = 1 (paper 000, section 4.1): 30 + 55 + 6 = 91 parameters."""
    model = ReflectionDenoiser(1, (10, 5), rngs=nnx.Rngs(key))
    shapes = [tuple(layer.kernel.shape) for layer in model.f.layers]
    assert shapes == [(2, 10), (10, 5), (5, 1)]
    n = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n == 91


@pytest.mark.parametrize("features", [1, 3])
def test_denoiser_is_odd(key, features):
    """D(-x, t) = -D(x, t) for random parameters, inputs and times (any dimension d)."""
    k_model, k_x, k_t = jax.random.split(key, 3)
    model = ReflectionDenoiser(features, (10, 5), rngs=nnx.Rngs(k_model))
    x = 2.0 * jax.random.normal(k_x, (64, features))
    t = jax.random.uniform(k_t, (64,))
    out = model(x, t)
    np.testing.assert_allclose(model(-x, t), -out, atol=1e-6)
    assert float(jnp.max(jnp.abs(out))) > 1e-3  # not trivially zero


def test_odd_check_fails_for_plain_mlp(key):
    """The oddness check above is able to fail: a plain MLP f (no symmetrisation) is not odd."""
    f = TimeMLP(1, (10, 5), rngs=nnx.Rngs(key))
    x = jnp.linspace(-2.0, 2.0, 33)[:, None]
    t = jnp.full((33,), 0.3)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(f(-x, t), -f(x, t), atol=1e-6)


def test_matches_numpy_forward(key):
    """D(x, t) equals f(x, t) - f(-x, t) computed independently in float64 numpy."""
    k_model, k_x, k_t = jax.random.split(key, 3)
    model = ReflectionDenoiser(1, (10, 5), rngs=nnx.Rngs(k_model))
    x = np.asarray(jax.random.normal(k_x, (50, 1)))
    t = np.asarray(jax.random.uniform(k_t, (50,)))
    ref = _numpy_mlp(model.f, x, t) - _numpy_mlp(model.f, -x, t)
    np.testing.assert_allclose(np.asarray(model(x, t)), ref, rtol=1e-5, atol=1e-6)


def test_time_broadcast_and_generic_odd_symmetrise(key):
    """A scalar t broadcasts; odd_symmetrise works on any callable."""
    model = ReflectionDenoiser(1, (10, 5), rngs=nnx.Rngs(key))
    x = jnp.linspace(-1.0, 1.0, 7)[:, None]
    np.testing.assert_allclose(model(x, 0.5), model(x, jnp.full((7,), 0.5)), atol=0)
    np.testing.assert_allclose(odd_symmetrise(lambda x, t: x**2 + x + t, x, 0.0), 2 * x)


def test_fan_in_uniform_init_bounds(key):
    """PyTorch nn.Linear default: every weight and bias in [-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    model = TimeMLP(1, (10, 5), rngs=nnx.Rngs(key))
    for layer in model.layers:
        bound = 1.0 / np.sqrt(layer.kernel.shape[0])
        for p in (layer.kernel[...], layer.bias[...]):
            assert float(jnp.max(jnp.abs(p))) <= bound
            assert float(jnp.max(jnp.abs(p))) > 0.5 * bound  # spread over the interval


def test_errors_speak(key):
    model = ReflectionDenoiser(1, rngs=nnx.Rngs(key))
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 1\]"):
        model(jnp.zeros((4, 2)), 0.1)
    with pytest.raises(ValueError, match="Unknown init"):
        TimeMLP(1, rngs=nnx.Rngs(key), init="xavier")


def test_float64(key, x64):
    model = ReflectionDenoiser(1, rngs=nnx.Rngs(key), dtype=jnp.float64)
    x = jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float64)[:, None]
    out = model(x, 0.2)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(model(-x, 0.2), -out, atol=1e-14)
