"""Training: state, optimiser, the pure train step, the host loop, checkpoints, logging,
the workdir lock."""

from symdiff_jax.train.checkpoint import Checkpointer, CheckpointError
from symdiff_jax.train.lock import WorkdirLockedError, workdir_lock
from symdiff_jax.train.loop import NonFiniteLossError, fit
from symdiff_jax.train.metric_writer import MetricWriter, read_metrics_jsonl
from symdiff_jax.train.optim import make_optimizer
from symdiff_jax.train.state import (
    TrainState,
    ema_decay_at,
    init_train_state,
    merge_model,
    split_model,
    update_ema,
)
from symdiff_jax.train.step import (
    bind_train_step,
    make_eval_step,
    make_train_step,
    reduce_losses,
    state_is_sound,
    train_step,
)

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "MetricWriter",
    "NonFiniteLossError",
    "TrainState",
    "WorkdirLockedError",
    "bind_train_step",
    "ema_decay_at",
    "fit",
    "init_train_state",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "merge_model",
    "read_metrics_jsonl",
    "reduce_losses",
    "split_model",
    "state_is_sound",
    "train_step",
    "update_ema",
    "workdir_lock",
]
