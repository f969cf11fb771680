"""The run of a trained experiment: initialise or resume, fit, score, write the metrics.

An experiment (QM9/GEOM generation, conformer generation) describes itself by a `Hooks`
tuple of plain functions; `train_and_evaluate(config, workdir, hooks)` does the rest the
same way for all of them:

  1. keys `init, train, eval, sample = split(key(config.seed), 4)`;
  2. the model `hooks.build_model(key_init)` (parameters edited by `hooks.prepare_params`),
     AdamW from `config.optim` (`common.state`), the state placed on a mesh of all devices
     (FSDP-split with `config.train_fsdp`);
  3. the newest intact checkpoint of `<workdir>/checkpoints` restored when there is one
     (exact resume: `hooks.train_batches(start_step)` yields the batches of the steps after
     it); a workdir with a training log but no checkpoint is refused; only then the
     config is recorded (`common.workdir.record_config`);
  4. `symdiff_jax.train.loop.fit` with the EMA parameters scored by `hooks.make_evaluate`
     every `config.train.eval_every` steps (the best of `hooks.best_metric` kept) and by
     `hooks.make_progress` every `config.train.sample_every` steps;
  5. `hooks.final_metrics` on the final EMA parameters (sampling and scoring).

Returns the flat metrics that `experiments.train` writes to `metrics.json`: `params`,
`steps`, `train_time_s`, `resumed_from_step`, the last `train/*` and `val/*` values, the
final metrics and `wall_time_s`. Only process 0 writes metrics and pictures.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
from absl import logging
from flax import nnx

from experiments.common.io import checkpoint_dir
from experiments.common.state import initial_state
from experiments.common.summaries import write_summaries
from experiments.common.workdir import (
    check_config_numbers,
    check_resumable,
    logged_values,
    record_config,
)
from symdiff_jax.models.parameters import count_params
from symdiff_jax.train import Checkpointer, MetricWriter, sharding
from symdiff_jax.train.loop import fit

Params = Any
Scores = Callable[[Params, jax.Array], Mapping[str, float]]


class RunKeys(NamedTuple):
    """The four keys of a run, `split(key(config.seed), 4)` in this order."""

    init: jax.Array
    train: jax.Array
    eval: jax.Array
    sample: jax.Array


class Hooks(NamedTuple):
    """What an experiment passes to `train_and_evaluate`: plain functions, no state.

    Attributes:
      build_model: `key -> nnx.Module`, the model at a key.
      loss_fn: `(model, batch, key) -> {"loss": [B], ...}` (unreduced).
      train_batches: `start_step -> iterator of host batches` of steps `start_step + 1, ...`.
      device_keys: the batch entries a train step reads.
      make_evaluate: `graphdef -> (ema_params, key) -> {"val/<name>": float}`.
      best_metric: the `val/` key whose lowest value marks the best checkpoint.
      final_metrics: `(graphdef, ema_params, keys, is_main) -> flat metrics` after training.
      make_progress: optional `graphdef -> (ema_params, key) -> metrics`, every
        `config.train.sample_every` steps.
      prepare_params: optional `params -> params` applied to the fresh parameters.
    """

    build_model: Callable[[jax.Array], nnx.Module]
    loss_fn: Callable[[nnx.Module, Any, jax.Array], Mapping[str, jax.Array]]
    train_batches: Callable[[int], Iterator[Mapping[str, Any]]]
    device_keys: Sequence[str]
    make_evaluate: Callable[[nnx.GraphDef], Scores]
    best_metric: str
    final_metrics: Callable[[nnx.GraphDef, Params, RunKeys, bool], dict[str, Any]]
    make_progress: Callable[[nnx.GraphDef], Scores] | None = None
    prepare_params: Callable[[Params], Params] | None = None


def run_keys(seed: int) -> RunKeys:
    """The keys of a run with seed `seed`."""
    return RunKeys(*jax.random.split(jax.random.key(seed), 4))


def train_and_evaluate(config, workdir: str, hooks: Hooks) -> dict[str, Any]:
    """Trains (or resumes) the experiment of `hooks` into `workdir`; returns flat metrics."""
    t_start = time.time()
    check_config_numbers(config)
    keys = run_keys(config.seed)
    graphdef, state, optimizer = initial_state(
        config, hooks.build_model, keys.init, hooks.prepare_params
    )
    num_params = count_params(state.params)
    logging.info("%s: %d parameters", config.variant, num_params)
    # Data parallelism: the state replicated (or FSDP-split) over a mesh of all devices.
    mesh = sharding.make_mesh()
    shardings = sharding.state_shardings(state, mesh, fsdp=config.get("train_fsdp", False))
    state = sharding.place_state(state, shardings)
    k_train = sharding.replicate(keys.train, mesh)
    is_main = sharding.is_main_process()  # only process 0 writes metrics and pictures

    checkpointer = Checkpointer(
        checkpoint_dir(workdir),
        max_to_keep=config.train.keep_checkpoints,
        best_metric=hooks.best_metric,
    )
    resuming = checkpointer.latest_step() is not None
    check_resumable(workdir, resuming)
    if resuming:  # the newest intact step (a damaged newer one is skipped with a warning)
        state = checkpointer.restore(state)
        logging.info("Resumed from step %d", int(state.step))
    start_step = int(jax.device_get(state.step))
    if is_main:  # only now: a failed resume leaves the run's configs as they were
        record_config(workdir, config)

    step_fn = sharding.make_sharded_train_step(
        graphdef,
        hooks.loss_fn,
        optimizer,
        mesh,
        shardings,
        ema_decay=config.optim.ema_decay,
        ema_warmup=config.optim.ema_warmup,
    )
    batches = (
        sharding.shard_batch({k: b[k] for k in hooks.device_keys}, mesh)
        for b in hooks.train_batches(start_step)
    )
    evaluate = hooks.make_evaluate(graphdef)

    def eval_fn(s) -> Mapping[str, float]:
        return evaluate(sharding.host_local(s.ema_params), keys.eval)

    sample_fn = None
    if hooks.make_progress is not None:
        progress_metrics = hooks.make_progress(graphdef)

        def sample_fn(s) -> Mapping[str, float]:
            params = sharding.host_local(s.ema_params)
            return progress_metrics(params, jax.random.fold_in(keys.sample, s.step))

    with MetricWriter(workdir) if is_main else contextlib.nullcontext() as writer:
        t_train = time.time()
        state, last = fit(
            state,
            step_fn,
            batches,
            k_train,
            num_steps=config.num_train_steps,
            writer=writer,
            checkpointer=checkpointer,
            log_every=config.train.log_every,
            checkpoint_every=config.train.checkpoint_every,
            eval_every=config.train.eval_every,
            eval_fn=eval_fn,
            sample_every=config.train.get("sample_every", 0),
            sample_fn=sample_fn,
            progress=config.train.progress_bar,
            time_budget_s=config.train.get("time_budget_s", 0.0) or None,
            budget_clock=config.train.get("budget_clock", "wall"),
        )
        train_time = time.time() - t_train
        checkpointer.close()

        metrics: dict[str, Any] = {
            "params": num_params,
            "steps": int(jax.device_get(state.step)),
            "train_time_s": train_time,
            "resumed_from_step": start_step,
        }
        logged = {k: v for k, v in last.items() if k.startswith(("train/", "val/"))}
        if not logged and is_main and metrics["steps"] == start_step:  # resumed at the end
            logged = logged_values(workdir, start_step, ("train/", "val/"))
        metrics.update(logged)
        ema = sharding.host_local(state.ema_params)
        metrics.update(hooks.final_metrics(graphdef, ema, keys, is_main))
        if writer is not None:
            final = {
                k: v
                for k, v in metrics.items()
                if isinstance(v, float) and not k.startswith("train/")
            }
            writer.write_scalars(metrics["steps"], final)
            write_summaries(writer, metrics["steps"], config, metrics)  # config, samples.png
    metrics["wall_time_s"] = time.time() - t_start
    return metrics
