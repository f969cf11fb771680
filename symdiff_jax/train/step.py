"""The pure, jit-compiled train and evaluation steps over `(state, batch, key)`.

A loss function `loss_fn(model, batch, key) -> dict of [B] arrays` (unreduced, with
a `"loss"` entry) is the only model-specific piece; the step merges the parameters
into the module, reduces the per-example values (the one place that reduces), takes
gradients, clips and applies the optimiser, updates the EMA, and keeps the old state
whenever the loss, the gradients or the new state are not sound: a NaN/Inf loss or
gradient norm, or a NaN/Inf/overflowing leaf of the updated parameters, EMA or
optimiser state (the host loop then stops with the step number, see
`symdiff_jax.train.loop`). A state that a checkpoint can receive has therefore passed
this check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from symdiff_jax.train.state import TrainState, ema_decay_at, update_ema

LossFn = Callable[[nnx.Module, Mapping[str, jax.Array], jax.Array], Mapping[str, jax.Array]]


def reduce_losses(per_example: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Means over the batch of every `[B]` entry (the single reduction point)."""
    return {k: jnp.mean(v) for k, v in per_example.items()}


DEFAULT_MAX_ABS_PARAM = 1e6


def _all_within(tree: Any, bound: float | None) -> jax.Array:
    """True iff every floating leaf is finite and, with a bound, `|x| <= bound` everywhere.

    A comparison with NaN is False, so `|x| <= bound` also rejects NaN and Inf.
    """
    checks = []
    for x in jax.tree.leaves(tree):
        if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
            continue
        checks.append(jnp.all(jnp.isfinite(x) if bound is None else jnp.abs(x) <= bound))
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def state_is_sound(
    state: TrainState, max_abs_param: float | None = DEFAULT_MAX_ABS_PARAM
) -> jax.Array:
    """True iff `state` may be kept and saved: params, EMA and optimiser state all finite,
    and every parameter and EMA value within `max_abs_param` in magnitude (None: no bound).

    A bound far above any trained weight catches a diverging update (e.g. a huge learning
    rate) before the values overflow.
    """
    params_ok = _all_within((state.params, state.ema_params), max_abs_param)
    return params_ok & _all_within(state.opt_state, None)


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    ema_decay: float,
    ema_warmup: bool = True,
    max_abs_param: float | None = DEFAULT_MAX_ABS_PARAM,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser update. Pure; the key is folded by the step inside.

    Args:
      state: the current `TrainState`.
      batch: a dict of arrays.
      key: the run's base key (`fold_in(key, state.step)` is used, so a resumed run
        draws the same randomness as an uninterrupted one).
      graphdef: the static module structure.
      loss_fn: `(model, batch, key) -> {"loss": [B], ...}`.
      optimizer: an optax transformation.
      ema_decay: EMA decay (see `ema_decay_at`).
      ema_warmup: use the warmup form of the decay.
      max_abs_param: largest magnitude a parameter or EMA value may reach (None: only
        finiteness is checked); an update past it is skipped like a NaN one.

    Returns:
      `(new_state, metrics)`: metrics hold the batch means of every loss entry,
      `grad_norm` and `finite` (1.0 if the update was applied, 0.0 if it was skipped
      because the loss, the gradients or the new state failed `state_is_sound`).
    """
    step_key = jax.random.fold_in(key, state.step)

    def objective(params):
        per_example = loss_fn(nnx.merge(graphdef, params), batch, step_key)
        means = reduce_losses(per_example)
        return means["loss"], means

    grads, metrics = jax.grad(objective, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)
    # A NaN or Inf anywhere in the gradients makes their norm NaN or Inf (as does a norm
    # past float32's range): the metric's reduction serves as the check too.
    finite = _all_within(metrics["loss"], None) & jnp.isfinite(grad_norm)

    def apply(state: TrainState) -> TrainState:
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay_at(state.step, ema_decay, ema_warmup)
        return TrainState(
            state.step + 1, params, opt_state, update_ema(state.ema_params, params, decay)
        )

    # The update runs inside the taken branch and writes the branch's output buffers
    # directly (selecting between a precomputed new state and the old one would copy every
    # leaf each step). The new state itself is then checked: a finite gradient can still
    # give non-finite or runaway parameters (a NaN or huge learning rate, an overflowing
    # optimiser moment), and such a state is replaced by the old one.
    new = jax.lax.cond(finite, apply, lambda state: state, state)
    sound = state_is_sound(new, max_abs_param)
    new = jax.lax.cond(sound, lambda pair: pair[0], lambda pair: pair[1], (new, state))
    finite = finite & sound
    metrics = dict(metrics, grad_norm=grad_norm, finite=finite.astype(jnp.float32))
    return new, metrics


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    donate: bool = True,
    **options: Any,
) -> Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, dict]]:
    """`jax.jit(train_step)` with everything static bound; donates the old state.

    Args:
      graphdef, loss_fn, optimizer: as `bind_train_step`.
      donate: donate the old state's buffers to the new one.
      **options: `ema_decay`, `ema_warmup`, `max_abs_param`, as `bind_train_step`.
    """
    step = bind_train_step(graphdef, loss_fn, optimizer, **options)
    return jax.jit(step, donate_argnums=(0,) if donate else ())


def bind_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    ema_decay: float = 0.9999,
    ema_warmup: bool = True,
    max_abs_param: float | None = DEFAULT_MAX_ABS_PARAM,
) -> Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, dict]]:
    """`train_step` with its static arguments bound: `step(state, batch, key)`, not compiled."""
    return functools.partial(
        train_step,
        graphdef=graphdef,
        loss_fn=loss_fn,
        optimizer=optimizer,
        ema_decay=ema_decay,
        ema_warmup=ema_warmup,
        max_abs_param=max_abs_param,
    )


def make_eval_step(
    graphdef: nnx.GraphDef, loss_fn: LossFn
) -> Callable[[Any, Mapping[str, jax.Array], jax.Array], dict[str, jax.Array]]:
    """`jit((params, batch, key) -> per-example values)` for evaluation (no reduction)."""

    def step(params, batch, key):
        return dict(loss_fn(nnx.merge(graphdef, params), batch, key))

    return jax.jit(step)
