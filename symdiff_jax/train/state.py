"""The training state: a pytree of arrays, with the module structure kept aside.

Flax NNX modules are split once into a static `GraphDef` and their parameters; the
jit-compiled train step works on the parameters only and merges them back into a
module inside (the split/merge boundary). The state is what checkpoints hold.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class TrainState(NamedTuple):
    """Everything that changes during training.

    Attributes:
      step: int32 scalar, the number of optimiser updates applied.
      params: the model's `nnx.State`.
      opt_state: the optimiser state.
      ema_params: exponential moving average of `params` (used for sampling).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, Any]:
    """`(graphdef, params)` of a module whose state is all parameters."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError(
            "The model holds non-parameter state (e.g. batch statistics or RNG streams); "
            "the train state only carries nnx.Param variables."
        )
    return graphdef, params


def merge_model(graphdef: nnx.GraphDef, params: Any) -> nnx.Module:
    """The module with `params` (inverse of `split_model`)."""
    return nnx.merge(graphdef, params)


def init_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """Step 0: the optimiser initialised on `params`, EMA equal to `params`."""
    ema = jax.tree.map(jnp.array, params)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), ema)


def ema_decay_at(step: jax.Array, decay: float, warmup: bool = True) -> jax.Array:
    """EMA decay used at `step`: `min(decay, (1 + step) / (10 + step))` with warmup.

    Without warmup the average starts at the initial parameters and forgets them at
    rate `1 - decay` (0.9999: ~10k steps), which dominates short runs; the warmup form
    (TensorFlow's `ExponentialMovingAverage(num_updates=...)`) averages evenly at first.
    """
    decay = jnp.asarray(decay, jnp.float32)
    if not warmup:
        return decay
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def update_ema(ema: Any, params: Any, decay: jax.Array) -> Any:
    """`ema <- decay * ema + (1 - decay) * params`, leaf by leaf."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype), ema, params)
