"""A run's hold on its workdir: the lock, the configs it records, the checks before work.

Every command that writes into a workdir holds `symdiff_jax.train.workdir_lock` on it for
the life of its process (`hold_workdir_or_exit`), so a second run stops at once naming
the holder's PID. A training run records its config twice: `<workdir>/config.json` (the
latest invocation, written only once the run has restored or started afresh) and
`<workdir>/checkpoints/config.json` (the config the checkpoints were made with, written
once and never overwritten; sampling and evaluation read it).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Iterator

from experiments.common.io import checkpoint_dir, non_finite_numbers, write_config
from symdiff_jax.train import (
    CheckpointError,
    NonFiniteLossError,
    WorkdirLockedError,
    read_metrics_jsonl,
    workdir_lock,
)

ORIGINAL_CONFIG = "config.json"  # in `<workdir>/checkpoints/`
METRICS_LOG = "metrics.jsonl"


class ConfigError(ValueError):
    """A config that cannot be run as given (e.g. a NaN or Inf number)."""


class StaleWorkdirError(FileNotFoundError):
    """A workdir that holds a run's logs but none of its checkpoints (they were deleted)."""


def original_config_path(workdir: str) -> str:
    """`<workdir>/checkpoints/config.json`: the config the run's checkpoints were made with."""
    return os.path.join(checkpoint_dir(workdir), ORIGINAL_CONFIG)


def check_config_numbers(config) -> None:
    """Refuses a config holding a NaN or Inf number, before any work.

    Raises:
      ConfigError: naming every such key and its value.
    """
    bad = non_finite_numbers(config.to_dict())
    if bad:
        raise ConfigError(
            f"Config numbers must be finite; got {', '.join(bad)}. Set them to finite values."
        )


def check_resumable(workdir: str, has_checkpoints: bool) -> None:
    """Refuses to start from step 0 in a workdir whose checkpoints were deleted.

    A run that finds no checkpoint starts afresh. If `<workdir>/metrics.jsonl` exists
    while the original config `checkpoints/config.json` (written when a run starts) does
    not, the run's checkpoints were deleted, and starting again would silently mix two
    runs' curves in one log. (A run stopped before its first save keeps that file and
    starts again.)

    Raises:
      StaleWorkdirError: the log exists and neither a checkpoint nor the original config.
    """
    log = os.path.join(workdir, METRICS_LOG)
    if has_checkpoints or not os.path.exists(log):
        return
    if not os.path.exists(original_config_path(workdir)):
        raise StaleWorkdirError(
            f"Workdir {workdir} has a training log ({log}) but no checkpoint in "
            f"{checkpoint_dir(workdir)}, so it cannot resume; train into a new --workdir, "
            f"or delete {log} to start this one over from step 0."
        )


def logged_values(workdir: str, step: int, prefixes: tuple[str, ...]) -> dict[str, float]:
    """The values logged for `step` in `<workdir>/metrics.jsonl` under keys starting with
    one of `prefixes` (a later line wins); {} without a log.

    A run resumed from its last checkpoint trains no step, so the `train/*` and `val/*`
    values of its final metrics are those its killed predecessor logged for that step.
    """
    path = os.path.join(workdir, METRICS_LOG)
    if not os.path.exists(path):
        return {}
    out: dict[str, float] = {}
    for record in read_metrics_jsonl(path, skip_invalid=True):
        if record.get("step") == step:
            out.update({k: v for k, v in record.items() if k.startswith(prefixes)})
    return out


def record_config(workdir: str, config) -> None:
    """Writes `<workdir>/config.json`, and `checkpoints/config.json` if there is none yet.

    Call it once the run has restored its checkpoint (or found none): a failed resume
    leaves both files as they were.
    """
    write_config(workdir, config)
    original = original_config_path(workdir)
    if not os.path.exists(original):
        os.makedirs(os.path.dirname(original), exist_ok=True)
        write_config(os.path.dirname(original), config)


def hold_workdir_or_exit(workdir: str) -> None:
    """Takes the run lock of an existing or new `workdir` until this process ends.

    A lock held by another process prints `error: ...` (naming its PID) and exits with 1.
    The kernel releases the lock when the process exits in any way.
    """
    lock = workdir_lock(workdir)
    try:
        lock.__enter__()
    except WorkdirLockedError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    atexit.register(lock.__exit__, None, None, None)


def hold_existing_workdir_or_exit(workdir: str, writes: bool) -> None:
    """`hold_workdir_or_exit` for a command that writes into `workdir` (a no-op when it
    writes elsewhere, or the workdir does not exist: the command reports that itself)."""
    if writes and os.path.isdir(workdir):
        hold_workdir_or_exit(workdir)


@contextlib.contextmanager
def user_errors_exit() -> Iterator[None]:
    """Turns the errors a user must act on into one `error: ...` line and exit code 1."""
    try:
        yield
    except (
        CheckpointError,
        ConfigError,
        StaleWorkdirError,
        WorkdirLockedError,
        NonFiniteLossError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
