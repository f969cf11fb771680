r"""Trains and evaluates one experiment.

    python -m experiments.train                       # configs/default.py
    python -m experiments.train --config configs/toy_1d.py --workdir workdirs/toy_1d
    python -m experiments.train --config configs/toy_2d.py:smoke --config.seed=3

The config file's `experiment` field picks the experiment (`experiments()`: its `train.run`).
Every run writes `<workdir>/config.json` and `<workdir>/metrics.json`.

Several hosts: start one process per host with the same flags plus
`--coordinator_address=<host 0>:<port> --num_processes=M --process_id=<0..M-1>`
(`jax.distributed.initialize`); the batch is split over all their devices and only
process 0 writes metrics and pictures (checkpoints are written by all, collectively).
"""

from __future__ import annotations

import os
import time
from types import ModuleType

from experiments.common import runtime

runtime.use_single_threaded_eigen()
runtime.keep_freed_memory()  # XLA's per-step scratch memory stays mapped

from absl import app, flags, logging  # noqa: E402 (after the XLA flags)
from ml_collections import config_flags  # noqa: E402


def experiments() -> dict[str, ModuleType]:
    """`config.experiment` -> the module whose `run(config, workdir)` trains and scores it.

    Imported when called: with several processes, nothing may touch a device before
    `jax.distributed.initialize`.
    """
    from experiments.conformers import train as conformers_train
    from experiments.particles import train as particles_train
    from experiments.qm9 import train as qm9_train
    from experiments.toys.toy_1d import train as toy_1d_train
    from experiments.toys.toy_2d import train as toy_2d_train

    return {
        "conformers": conformers_train,
        "geom_drugs": qm9_train,
        "particles": particles_train,
        "qm9": qm9_train,
        "toy_1d": toy_1d_train,
        "toy_2d": toy_2d_train,
    }


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEFAULT_CONFIG = os.path.join(_REPO, "configs", "default.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Python config file, optionally with `:variant`.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (default: workdirs/<config name>[_<variant>])."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0's coordinator."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")


def default_workdir(config_path: str) -> str:
    """`workdirs/<stem>[_<variant>]` for a config path such as `configs/toy_2d.py:smoke`."""
    path, _, variant = config_path.partition(":")
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("workdirs", f"{stem}_{variant}" if variant else stem)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from symdiff_jax.train import sharding

    # Before anything touches a device.
    sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    runtime.quiet_library_logs()
    from experiments.common.cli import fail
    from experiments.common.io import write_config, write_metrics
    from experiments.common.workdir import hold_workdir_or_exit, user_errors_exit

    runtime.enable_compilation_cache()
    runners = experiments()
    config = _CONFIG.value
    valid = ", ".join(sorted(runners))
    if "experiment" not in config:
        fail(
            f"--config={flags.FLAGS['config'].config_filename} has no `experiment` field; "
            f"set --config.experiment to one of {valid}."
        )
    if config.experiment not in runners:
        fail(f"--config.experiment={config.experiment!r} is not an experiment; use one of {valid}.")
    workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
    os.makedirs(workdir, exist_ok=True)
    is_main = sharding.is_main_process()  # only process 0 writes config, metrics, pictures
    if is_main:
        hold_workdir_or_exit(workdir)
    logging.info("Running %s into %s", config.experiment, workdir)

    start = time.time()
    with user_errors_exit():
        metrics = dict(runners[config.experiment].run(config, workdir))
    metrics.setdefault("wall_time_s", time.time() - start)
    if not is_main:
        return
    write_config(workdir, config)  # checkpointing runs wrote it once resumed or started
    path = write_metrics(workdir, metrics)

    width = max(len(k) for k in metrics)
    print(f"\n{config.experiment}: metrics written to {path}")
    for k in sorted(metrics):
        v = metrics[k]
        print(f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")


def cli() -> None:
    """The `symdiff-train` console script."""
    from experiments.common import cli as common_cli

    common_cli.run(main, default_config=_DEFAULT_CONFIG)


if __name__ == "__main__":
    cli()
