"""make_optimizer: the documented chain, and a clear error for every unusable number."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from symdiff_jax.train.optim import make_optimizer


@pytest.mark.parametrize("lr", [math.nan, math.inf, -math.inf, 0.0, -1e-3, np.float32("nan")])
def test_learning_rate_must_be_finite_and_positive(lr):
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0") as info:
        make_optimizer(lr)
    assert repr(lr) in str(info.value)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"weight_decay": math.nan}, "weight_decay"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"clip_norm": math.inf}, "clip_norm"),
        ({"clip_norm": 0.0}, "clip_norm"),
        ({"eps": math.nan}, "eps"),
        ({"b1": 1.0}, "b1"),
        ({"b2": math.nan}, "b2"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"warmup_steps": 2.5}, "warmup_steps"),
    ],
)
def test_other_numbers_are_checked(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_optimizer(1e-3, **kwargs)


def test_valid_settings_build_and_step():
    """One update on a quadratic: with clipping off it equals optax's AMSGrad + decay step."""
    params = {"w": jnp.asarray([1.0, -2.0])}
    grads = {"w": jnp.asarray([0.5, 0.25])}
    ours = make_optimizer(1e-2, weight_decay=0.1, clip_norm=None, warmup_steps=0)
    ref = optax.chain(optax.scale_by_amsgrad(), optax.add_decayed_weights(0.1), optax.scale(-1e-2))
    u, _ = ours.update(grads, ours.init(params), params)
    v, _ = ref.update(grads, ref.init(params), params)
    np.testing.assert_allclose(u["w"], v["w"], rtol=1e-6)
