"""`experiments.common.state`: the schedule of a config, compiled model calls, the optimizer."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from experiments.common import state
from symdiff_jax.diffusion.schedules import (
    cosine_schedule,
    linear_sigma_schedule,
    polynomial_schedule,
)


def _diffusion(**kw):
    return ml_collections.ConfigDict(
        {"schedule": "polynomial_2", "num_steps": 1000, "precision": 1e-5, **kw}
    )


@pytest.mark.parametrize(
    "config, reference",
    [
        (_diffusion(), polynomial_schedule(1000, precision=1e-5, power=2.0)),
        (
            _diffusion(schedule="polynomial_3", num_steps=50, precision=1e-4),
            polynomial_schedule(50, precision=1e-4, power=3.0),
        ),
        (
            _diffusion(schedule="linear_sigma", sigma_min=0.02, sigma_max=0.9),
            linear_sigma_schedule(0.02, 0.9),
        ),
        (_diffusion(schedule="cosine"), cosine_schedule()),
    ],
)
def test_make_schedule_is_the_named_schedule_with_the_configs_settings(config, reference):
    t = jnp.linspace(0.0, 1.0, 101)
    got = state.make_schedule(config)
    np.testing.assert_array_equal(np.asarray(got.gamma(t)), np.asarray(reference.gamma(t)))


def test_compiled_with_model_merges_and_caches():
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)

    def apply(m, x, scale):
        return m(x) * scale

    fn = state.compiled_with_model(apply, graphdef, 2.0)
    assert state.compiled_with_model(apply, graphdef, 2.0) is fn
    assert state.compiled_with_model(apply, graphdef, 3.0) is not fn
    x = jnp.ones((4, 2))
    np.testing.assert_allclose(np.asarray(fn(params, x)), np.asarray(model(x) * 2.0), rtol=1e-6)


def _optim_config(freeze_eps: bool):
    return ml_collections.ConfigDict(
        {
            "seed": 0,
            "freeze_eps": freeze_eps,
            "optim": dict(
                learning_rate=1e-2, weight_decay=0.0, amsgrad=False, clip_norm=0.0, warmup_steps=0
            ),
        }
    )


class _TwoParts(nnx.Module):
    def __init__(self, rngs):
        self.eps_net = nnx.Linear(2, 2, rngs=rngs)
        self.gamma_net = nnx.Linear(2, 2, rngs=rngs)

    def __call__(self, x):
        return self.gamma_net(self.eps_net(x))


def test_freeze_eps_keeps_the_eps_network_and_trains_the_rest():
    build = lambda key: _TwoParts(nnx.Rngs(key))  # noqa: E731
    graphdef, train_state, optimizer = state.initial_state(
        _optim_config(True), build, jax.random.key(0)
    )
    params = train_state.params
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    pure = nnx.to_pure_dict(updates)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(pure["eps_net"]))
    assert all(float(jnp.abs(u).max()) > 0.0 for u in jax.tree.leaves(pure["gamma_net"]))
    with pytest.raises(ValueError, match="freeze_eps needs a model with an eps_net"):
        state.make_train_optimizer(
            _optim_config(True), nnx.split(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))[1]
        )


def test_abstract_state_has_the_shapes_of_the_initial_state():
    config = _optim_config(False)
    build = lambda key: _TwoParts(nnx.Rngs(key))  # noqa: E731
    _, real, _ = state.initial_state(config, build, jax.random.key(config.seed))
    _, abstract = state.abstract_state(config, build)
    shapes = jax.tree.map(lambda a: (a.shape, a.dtype), abstract)
    assert shapes == jax.tree.map(lambda a: (a.shape, a.dtype), real)
