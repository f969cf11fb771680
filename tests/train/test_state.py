import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from symdiff_jax.train.state import (
    ema_decay_at,
    init_train_state,
    merge_model,
    split_model,
    update_ema,
)


def test_ema_decay_warmup_formula():
    np.testing.assert_allclose(ema_decay_at(0, 0.999), 0.1)  # (1 + 0) / (10 + 0)
    np.testing.assert_allclose(ema_decay_at(90, 0.999), 91 / 100)
    np.testing.assert_allclose(ema_decay_at(10**6, 0.999), 0.999)
    np.testing.assert_allclose(ema_decay_at(0, 0.999, warmup=False), 0.999)


def test_update_ema_is_the_convex_combination_and_keeps_dtypes():
    ema = {"a": jnp.ones(3, jnp.float32), "b": jnp.zeros((), jnp.bfloat16)}
    params = {"a": jnp.full(3, 3.0), "b": jnp.ones((), jnp.bfloat16)}
    out = update_ema(ema, params, jnp.float32(0.75))
    np.testing.assert_allclose(out["a"], 0.75 * 1.0 + 0.25 * 3.0)
    assert out["a"].dtype == jnp.float32 and out["b"].dtype == jnp.bfloat16
    np.testing.assert_allclose(float(out["b"]), 0.25)


def test_split_merge_round_trip_and_initial_state():
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    graphdef, params = split_model(model)
    x = jnp.ones((1, 2))
    np.testing.assert_array_equal(merge_model(graphdef, params)(x), model(x))
    state = init_train_state(params, optax.sgd(0.1))
    assert int(state.step) == 0
    for e, p in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(e, p)
        assert e is not p  # a copy, not the same buffer


def test_split_model_rejects_non_parameter_state():
    model = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="non-parameter state"):
        split_model(model)
