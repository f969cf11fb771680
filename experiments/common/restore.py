"""Restoring a trained run from its workdir, for sampling, evaluation and notebooks."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections

from experiments.common.io import checkpoint_dir, load_config_json
from experiments.common.workdir import hold_existing_workdir_or_exit
from symdiff_jax.train import Checkpointer, CheckpointError


class WorkdirError(FileNotFoundError):
    """A workdir that is not a trained run of the expected kind (missing, no checkpoint)."""


class RestoredRun(NamedTuple):
    """A trained run ready to sample: its config, model structure and EMA parameters."""

    workdir: str
    config: ml_collections.ConfigDict
    graphdef: Any
    params: Any  # the EMA parameters of the restored step
    step: int


def _flat(tree, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def config_argument(name: str, config: ml_collections.ConfigDict | None) -> str:
    """`configs/<name>.py[:small|:smoke]`: the `--config` value closest to a run's config.

    Of the sizes of `configs/<name>.py`, the one differing from `config` in the fewest
    keys (command-line overrides make a few differ); `configs/<name>.py` without a config
    or when the file is unknown.
    """
    path = f"configs/{name}.py"
    if config is None:
        return path
    import configs

    run = _flat(config.to_dict())

    def distance(size: str) -> int:
        flat = _flat(configs.get_config(name, size or None).to_dict())
        return sum(run.get(k) != v for k, v in flat.items())

    try:
        size = min(("", "small", "smoke"), key=distance)
    except Exception:  # an unknown config name or size: the plain path
        return path
    return f"{path}:{size}" if size else path


def parse_checkpoint(spec: str | int) -> tuple[bool, int | None]:
    """`"latest"` -> `(False, None)`, `"best"` -> `(True, None)`, `"1500"` -> `(False, 1500)`.

    Raises:
      ValueError: anything else (the message lists the accepted forms).
    """
    text = str(spec).strip().lower()
    if text == "latest":
        return False, None
    if text == "best":
        return True, None
    if text.isdigit():
        return False, int(text)
    raise ValueError(
        f"checkpoint must be 'latest', 'best' or a step number (e.g. 5000); got {spec!r}."
    )


def restore_run(
    workdir: str,
    checkpoint: str | int,
    *,
    experiments: tuple[str, ...],
    abstract_state: Callable[[ml_collections.ConfigDict], tuple[Any, Any]],
    train_command: Callable[[str, ml_collections.ConfigDict | None], str],
) -> RestoredRun:
    """Restores the EMA parameters of a workdir whose config's `experiment` is in `experiments`.

    Args:
      workdir: a directory written by `python -m experiments.train`.
      checkpoint: `"latest"`, `"best"` or a step number.
      experiments: the accepted `config.experiment` values.
      abstract_state: `config -> (graphdef, abstract TrainState)`.
      train_command: `(workdir, config or None) -> the command that trains such a run`
        (for messages).

    Raises:
      FileNotFoundError (`WorkdirError`): the workdir, its config.json or its checkpoints
        are missing, or it holds another experiment; the message says how to train one.
      ValueError: a malformed `checkpoint`.
      symdiff_jax.train.CheckpointError: the checkpoint exists but cannot be restored
        (damaged files, unknown step, no best step, a config that no longer matches).
        Restoring only reads: nothing in the workdir is changed.
    """
    best, step = parse_checkpoint(checkpoint)
    if not os.path.isdir(workdir):
        raise WorkdirError(
            f"Workdir {workdir!r} does not exist. Train a model into it first: "
            f"`{train_command(workdir, None)}`."
        )
    config = load_config_json(workdir)  # FileNotFoundError without config.json
    if config.get("experiment") not in experiments:
        raise WorkdirError(
            f"Workdir {workdir!r} holds a {config.get('experiment')!r} run; this command "
            f"supports {' and '.join(experiments)} runs only."
        )
    directory = checkpoint_dir(workdir)
    with Checkpointer(directory) as ckpt:
        steps = ckpt.all_steps()
    if not steps:
        raise WorkdirError(
            f"No checkpoints in {directory}: the run in {workdir!r} has not saved one yet "
            f"(it saves every config.train.checkpoint_every = "
            f"{config.train.checkpoint_every} steps). Train or resume it with "
            f"`{train_command(workdir, config)}`."
        )
    graphdef, target = abstract_state(config)
    with Checkpointer(directory) as ckpt:
        state = ckpt.restore(target, step=step, best=best)
    return RestoredRun(
        workdir=workdir,
        config=config,
        graphdef=graphdef,
        params=state.ema_params,
        step=int(jax.device_get(state.step)),
    )


def load_run_or_exit(
    workdir: str,
    checkpoint: str,
    loader: Callable[[str, str], RestoredRun],
    *,
    writes: bool = True,
) -> RestoredRun:
    """`loader(workdir, checkpoint)` for the command lines: a user error prints `error: ...`
    and exits with 1.

    With `writes` (the command writes into the workdir), the workdir's run lock is taken
    first and held until the process ends: a run already using the workdir stops this one
    at once (`common.workdir.hold_workdir_or_exit`). Nothing is written before the run is
    restored, so a failure leaves the workdir as it was.
    """
    hold_existing_workdir_or_exit(workdir, writes)
    try:
        return loader(workdir, checkpoint)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
    except CheckpointError as err:
        print(
            f"error: {err}\nWith this command, pass --checkpoint <step> (or best) to use "
            "another checkpoint of the run.",
            file=sys.stderr,
        )
    sys.exit(1)
