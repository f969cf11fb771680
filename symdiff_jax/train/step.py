"""The pure, jit-compiled train and evaluation steps over `(state, batch, key)`.

A loss function `loss_fn(model, batch, key) -> dict of [B] arrays` (unreduced, with
a `"loss"` entry) is the only model-specific piece; the step merges the parameters
into the module, reduces the per-example values (the one place that reduces), takes
gradients, clips and applies the optimiser, updates the EMA and keeps the old state
whenever the loss or the gradients are not finite (the host loop then stops with the
step number, see `symdiff_jax.train.loop`).
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


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


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

    Returns:
      `(new_state, metrics)`: metrics hold the batch means of every loss entry,
      `grad_norm` and `finite` (1.0 if the update was applied, 0.0 if it was skipped
      because something was NaN/Inf).
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
    finite = _all_finite(metrics["loss"]) & jnp.isfinite(grad_norm)

    def apply(state: TrainState) -> TrainState:
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay_at(state.step, ema_decay, ema_warmup)
        return TrainState(
            state.step + 1, params, opt_state, update_ema(state.ema_params, params, decay)
        )

    # The update runs inside the taken branch and writes the branch's output buffers
    # directly; the skip branch copies the old state (only on a bad step). Selecting
    # between a precomputed new state and the old one would copy every leaf each step.
    new = jax.lax.cond(finite, apply, lambda state: state, state)
    metrics = dict(metrics, grad_norm=grad_norm, finite=finite.astype(jnp.float32))
    return new, metrics


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    ema_decay: float = 0.9999,
    ema_warmup: bool = True,
    donate: bool = True,
) -> Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, dict]]:
    """`jax.jit(train_step)` with everything static bound; donates the old state."""
    step = bind_train_step(graphdef, loss_fn, optimizer, ema_decay=ema_decay, ema_warmup=ema_warmup)
    return jax.jit(step, donate_argnums=(0,) if donate else ())


def bind_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    ema_decay: float = 0.9999,
    ema_warmup: bool = True,
) -> Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, dict]]:
    """`train_step` with its static arguments bound: `step(state, batch, key)`, not compiled."""
    return functools.partial(
        train_step,
        graphdef=graphdef,
        loss_fn=loss_fn,
        optimizer=optimizer,
        ema_decay=ema_decay,
        ema_warmup=ema_warmup,
    )


def make_eval_step(
    graphdef: nnx.GraphDef, loss_fn: LossFn
) -> Callable[[Any, Mapping[str, jax.Array], jax.Array], dict[str, jax.Array]]:
    """`jit((params, batch, key) -> per-example values)` for evaluation (no reduction)."""

    def step(params, batch, key):
        return dict(loss_fn(nnx.merge(graphdef, params), batch, key))

    return jax.jit(step)
