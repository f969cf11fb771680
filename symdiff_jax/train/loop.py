"""The host-side training loop: steps, logging, evaluation, checkpoints, NaN guard.

`fit` drives a compiled `step_fn(state, batch, key) -> (state, metrics)` (see
`symdiff_jax.train.step`) over a batch iterator that starts at the state's step, so
a run restored from a checkpoint continues exactly where it stopped. The step keeps
the old state when a loss, a gradient or the updated state is not sound (see
`symdiff_jax.train.step.state_is_sound`); `fit` checks that flag before
every log, evaluation and checkpoint and stops with `NonFiniteLossError` naming the
first bad step, so no checkpoint ever holds a state that came after a NaN.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from symdiff_jax.train.state import TrainState


class NonFiniteLossError(FloatingPointError):
    """A training step produced a NaN/Inf loss or gradient, or an unsound new state."""


def _mean_metrics(buffer: list[dict[str, Any]]) -> dict[str, float]:
    host = jax.device_get(buffer)
    keys = [k for k in host[0] if k != "finite"]
    return {f"train/{k}": float(np.mean([h[k] for h in host])) for k in keys}


def _check_finite(buffer: list[dict[str, Any]], first_step: int, checkpointer) -> None:
    flags = np.asarray(jax.device_get([m["finite"] for m in buffer]))
    bad = np.flatnonzero(flags < 0.5)
    if bad.size:
        step = first_step + int(bad[0])
        last = checkpointer.latest_step() if checkpointer is not None else None
        raise NonFiniteLossError(
            f"Non-finite loss, gradient or updated parameters at step {step} (the update "
            "was skipped). "
            f"The last checkpoint (step {last}) was written before it and is kept. Lower "
            "the learning rate, check the data, or resume from that checkpoint."
        )


def examples_in(batch: Any) -> int:
    """Examples in a batch: the leading size of its first array leaf (1 without one)."""
    leaves = [x for x in jax.tree.leaves(batch) if np.ndim(x) > 0]
    return int(np.shape(leaves[0])[0]) if leaves else 1


def example_unit(batch: Any) -> str:
    """What the progress bar counts: "mol" for molecule batches (`mask`/`num_atoms`), else "ex"."""
    keys = batch.keys() if isinstance(batch, Mapping) else ()
    return "mol" if {"mask", "num_atoms"} & set(keys) else "ex"


@contextlib.contextmanager
def compile_notice(what: str, every_s: float = 15.0) -> Iterator[None]:
    """Logs "compiling <what>...", then the elapsed time every `every_s` s, then the total.

    A sign of life while XLA compiles the first step, which can take minutes.
    """
    logging.info("compiling %s...", what)
    t0, done = time.perf_counter(), threading.Event()

    def tick():
        while not done.wait(every_s):
            logging.info("compiling %s... %.0f s", what, time.perf_counter() - t0)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    logging.info("compiled %s in %.1f s (first step included)", what, time.perf_counter() - t0)


BUDGET_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def budget_clock_fn(name: str) -> Callable[[], float]:
    """The clock a time budget is measured on: "wall" or "cpu" (`BUDGET_CLOCKS`)."""
    if name not in BUDGET_CLOCKS:
        raise ValueError(f"Unknown budget clock {name!r}; expected one of {sorted(BUDGET_CLOCKS)}.")
    return BUDGET_CLOCKS[name]


def fit(
    state: TrainState,
    step_fn: Callable[[TrainState, Any, jax.Array], tuple[TrainState, Mapping[str, Any]]],
    batches: Iterator[Any],
    key: jax.Array,
    *,
    num_steps: int,
    writer=None,
    checkpointer=None,
    log_every: int = 100,
    checkpoint_every: int = 0,
    eval_every: int = 0,
    eval_fn: Callable[[TrainState], Mapping[str, float]] | None = None,
    sample_every: int = 0,
    sample_fn: Callable[[TrainState], Mapping[str, float]] | None = None,
    progress: bool = True,
    time_budget_s: float | None = None,
    budget_clock: str = "wall",
) -> tuple[TrainState, dict[str, float]]:
    """Trains from `state.step` to `num_steps`.

    Args:
      state: the starting state (step 0 or restored).
      step_fn: the compiled train step.
      batches: yields the batch of step `state.step`, then the next, ...
      key: the run's base key (the step folds in the step number).
      num_steps: the total number of steps of the run.
      writer: a `MetricWriter` (or None).
      checkpointer: a `Checkpointer` (or None).
      log_every: steps between logged training means.
      checkpoint_every: steps between checkpoints (0: only the final one).
      eval_every: steps between `eval_fn` calls (0: never during training); its
        metrics (e.g. `val/nll`) go to the writer and the checkpoint saved with them.
      eval_fn: `state -> {name: value}`.
      sample_every: steps between `sample_fn` calls (0: never).
      sample_fn: `state -> {name: value}` (e.g. stability of a few samples).
      progress: show a tqdm progress bar counting examples (molecules for molecule
        batches, `example_unit`); the first step is announced (`compile_notice`).
      time_budget_s: stop after the step during which the training time (wall time minus
        the time spent in evaluation, sampling and checkpoints) passes this many seconds;
        that step is then treated as the last one (logged, evaluated, checkpointed). None:
        run to `num_steps`. A budget makes the number of steps depend on the machine's
        speed, so compare runs by wall-clock, not step by step.
      budget_clock: the clock of `time_budget_s`: "wall" (`time.perf_counter`) or
        "cpu" (`time.process_time`: the CPU seconds of this process, all threads), which
        gives runs equal compute even when other processes share the machine.

    Returns:
      `(state, last)`: the final state and the last logged means (`train/loss`, ...,
      `train/steps_per_s`) merged with the last evaluation.

    Raises:
      NonFiniteLossError: a step had a NaN/Inf loss or gradient.
    """
    start = int(jax.device_get(state.step))
    bar, per_step = None, 1
    last: dict[str, float] = {}
    buffer: list[dict[str, Any]] = []
    window_start, window_first = time.perf_counter(), start

    def every(n: int, step: int) -> bool:
        return n > 0 and step % n == 0

    clock = budget_clock_fn(budget_clock)
    t_begin, t_outside = clock(), 0.0  # outside: eval, sample, checkpoint
    for step in range(start + 1, num_steps + 1):
        batch = next(batches)
        if step == start + 1:  # the first step compiles: a sign of life, then the bar
            per_step = examples_in(batch)
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(
                    total=num_steps * per_step,
                    initial=start * per_step,
                    desc="train",
                    unit=example_unit(batch),
                    dynamic_ncols=True,
                )
            with compile_notice("the train step"):
                state, metrics = step_fn(state, batch, key)
                jax.block_until_ready(metrics)
        else:
            state, metrics = step_fn(state, batch, key)
        buffer.append(metrics)
        out_of_time = time_budget_s is not None and clock() - t_begin - t_outside > time_budget_s
        is_last = step == num_steps or out_of_time
        flush = every(log_every, step) or is_last
        evaluate = eval_fn is not None and (every(eval_every, step) or is_last)
        sample = sample_fn is not None and every(sample_every, step)
        save = checkpointer is not None and (every(checkpoint_every, step) or is_last)
        if not (flush or evaluate or sample or save):
            if bar is not None:
                bar.update(per_step)
            continue
        _check_finite(buffer, window_first + 1, checkpointer)
        means = _mean_metrics(buffer)
        elapsed = time.perf_counter() - window_start
        means["train/steps_per_s"] = len(buffer) / max(elapsed, 1e-9)
        buffer, window_start, window_first = [], time.perf_counter(), step
        last.update(means)
        t_side = clock()
        extra: dict[str, float] = {}
        if evaluate:
            extra.update(eval_fn(state))
        if sample:
            extra.update(sample_fn(state))
        last.update(extra)
        if writer is not None:
            writer.write_scalars(step, {**means, **extra})
        if save:
            checkpointer.save(step, state, metrics=extra or None)
        t_outside += clock() - t_side
        if bar is not None:
            bar.update(per_step)
            bar.set_postfix(
                loss=f"{means['train/loss']:.4f}", it_s=f"{means['train/steps_per_s']:.2f}"
            )
        else:
            logging.info(
                "step %d: %s", step, {k: round(v, 5) for k, v in {**means, **extra}.items()}
            )
        window_start = time.perf_counter()
        if out_of_time:
            logging.info(
                "Training time budget of %.0f s (%s clock) reached at step %d.",
                time_budget_s,
                budget_clock,
                step,
            )
            break
    if bar is not None:
        bar.close()
    if checkpointer is not None:
        checkpointer.wait_until_finished()
    return state, last
