"""The train step's guard: a step whose new state is not sound is skipped, never kept."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from symdiff_jax.train.state import init_train_state, split_model
from symdiff_jax.train.step import make_train_step, state_is_sound


def loss_fn(model, batch, key):
    del key
    return {"loss": (model(batch["x"])[:, 0] - batch["y"]) ** 2}


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    return {"x": jnp.asarray(x), "y": jnp.asarray(x @ np.array([1.0, -2.0, 0.5], np.float32))}


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def _run(optimizer, **kwargs):
    graphdef, params = split_model(nnx.Linear(3, 1, rngs=nnx.Rngs(0)))
    state = init_train_state(params, optimizer)
    before = _leaves(state)
    step = make_train_step(graphdef, loss_fn, optimizer, ema_decay=0.9, donate=False, **kwargs)
    new, metrics = step(state, _batch(), jax.random.key(0))
    return before, new, metrics


@pytest.mark.parametrize(
    "optimizer",
    [optax.sgd(math.nan), optax.adam(math.nan), optax.sgd(1e38), optax.adam(1e9)],
    ids=["sgd-nan-lr", "adam-nan-lr", "sgd-overflow", "adam-huge-lr"],
)
def test_unsound_new_state_is_rejected(optimizer):
    """Finite loss and gradients, but NaN / Inf / runaway parameters after the update."""
    before, new, metrics = _run(optimizer)
    assert math.isfinite(float(metrics["loss"])) and math.isfinite(float(metrics["grad_norm"]))
    assert float(metrics["finite"]) == 0.0
    assert int(new.step) == 0
    for a, b in zip(before, _leaves(new), strict=True):
        assert a.tobytes() == b.tobytes()


def test_sound_update_is_applied():
    before, new, metrics = _run(optax.adam(1e-2))
    assert float(metrics["finite"]) == 1.0 and int(new.step) == 1
    assert any(a.tobytes() != b.tobytes() for a, b in zip(before, _leaves(new), strict=True))


def test_bound_can_be_lifted():
    """With max_abs_param=None only finiteness is checked: a 1e9 step is then applied."""
    _, new, metrics = _run(optax.adam(1e9), max_abs_param=None)
    assert float(metrics["finite"]) == 1.0 and int(new.step) == 1
    assert np.max(np.abs(np.asarray(new.params["kernel"][...]))) > 1e8


@pytest.mark.allow_nonfinite
def test_state_is_sound_looks_at_params_ema_and_optimizer_state():
    graphdef, params = split_model(nnx.Linear(3, 1, rngs=nnx.Rngs(0)))
    state = init_train_state(params, optax.adam(1e-3))
    assert bool(state_is_sound(state))

    def poison(tree):
        return jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), tree)

    assert not bool(state_is_sound(state._replace(params=poison(state.params))))
    assert not bool(state_is_sound(state._replace(ema_params=poison(state.ema_params))))
    mu = state.opt_state[0].mu
    bad_opt = (state.opt_state[0]._replace(mu=poison(mu)),) + tuple(state.opt_state[1:])
    assert not bool(state_is_sound(state._replace(opt_state=bad_opt)))
    big = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(2e6), state.ema_params)
    assert not bool(state_is_sound(state._replace(ema_params=big)))
    assert bool(state_is_sound(state._replace(ema_params=big), max_abs_param=None))
