r"""Variants of a particle system at equal wall-clock training budget, several seeds.

    python -m experiments.particles.compare --system dw4 --budget_s 60 --seeds 0,1 \
        --variants egnn_flow,symdiff,symdiff_h,dit_aug,dit,symdiff_target \
        --root workdirs/compare_dw4 --out workdirs/compare_dw4/table.md

Each (variant, seed) is one `python -m experiments.train` run with
`train.time_budget_s = budget_s` on the `--clock` (default "cpu": the CPU seconds of the run's
process, compilation included, evaluation and checkpoints excluded: equal compute however
busy the machine is; "wall": wall-clock seconds) and `evaluate.num_samples` samples; the
seeds of one variant run side by side (`--parallel`). A run whose `metrics.json` exists is
read, not repeated, so an interrupted comparison continues where it stopped; the table is
rewritten after every variant. The table
gives mean +- std over seeds (std with ddof = 1) of `energy_w2`, `distance_tv` and
`sample_s_per_1000`, the mean training steps reached, and `nll` where defined.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from absl import app, flags

_SYSTEM = flags.DEFINE_string("system", "dw4", "dw4 or lj13.")
_VARIANTS = flags.DEFINE_string(
    "variants", "egnn_flow,symdiff,symdiff_h,dit_aug,dit", "Comma-separated variants."
)
_SEEDS = flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds.")
_BUDGET = flags.DEFINE_float("budget_s", 120.0, "Training budget per run (s, on --clock).")
_CLOCK = flags.DEFINE_enum("clock", "cpu", ["cpu", "wall"], "Clock of the budget.")
_SAMPLES = flags.DEFINE_integer("num_samples", 10_000, "Samples scored per run.")
_ROOT = flags.DEFINE_string("root", "workdirs/compare", "Folder of the runs' workdirs.")
_OUT = flags.DEFINE_string("out", "", "Markdown table path (default: <root>/table.md).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs (seeds of one variant) at once.")
_EXTRA = flags.DEFINE_multi_string("override", [], "Extra --config.<key>=<value> for every run.")

COLUMNS = ("energy_w2", "distance_tv", "sample_s_per_1000", "nll")


def run_command(
    system: str,
    variant: str,
    seed: int,
    workdir: str,
    budget_s: float,
    samples: int,
    extra=(),
    clock: str = "cpu",
) -> list[str]:
    """The `experiments.train` command line of one run."""
    return [
        sys.executable,
        "-m",
        "experiments.train",
        f"--config=configs/{system}.py:{variant}",
        f"--workdir={workdir}",
        f"--config.seed={seed}",
        f"--config.train.time_budget_s={budget_s}",
        f"--config.train.budget_clock={clock}",
        "--config.train.eval_every=1000000",
        "--config.train.checkpoint_every=1000000",
        f"--config.evaluate.num_samples={samples}",
        *extra,
    ]


def summarise(results: dict[str, list[dict]]) -> str:
    """A markdown table: one row per variant, `mean +- std` over its runs."""
    head = "| variant | seeds | steps | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for variant, runs in results.items():
        cells = [variant, str(len(runs)), f"{np.mean([r['steps'] for r in runs]):.0f}"]
        for col in COLUMNS:
            values = [r[col] for r in runs if col in r]
            if not values:
                cells.append("-")
                continue
            std = np.std(values, ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{np.mean(values):.3g} +- {std:.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    del argv
    seeds = [int(s) for s in _SEEDS.value.split(",")]
    extra = [f"--config.{o}" for o in _EXTRA.value]
    results: dict[str, list[dict]] = {}
    for variant in _VARIANTS.value.split(","):
        jobs = []
        for seed in seeds:
            workdir = os.path.join(_ROOT.value, f"{variant}_seed{seed}")
            done = os.path.join(workdir, "metrics.json")
            if os.path.exists(done):
                with open(done) as f:
                    results.setdefault(variant, []).append(json.load(f))
                continue
            cmd = run_command(
                _SYSTEM.value,
                variant,
                seed,
                workdir,
                _BUDGET.value,
                _SAMPLES.value,
                extra,
                _CLOCK.value,
            )
            os.makedirs(workdir, exist_ok=True)
            log = open(workdir + ".log", "w")
            jobs.append((workdir, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
            if len(jobs) >= _PARALLEL.value:
                _wait(jobs, results.setdefault(variant, []))
        _wait(jobs, results.setdefault(variant, []))
        print(summarise({variant: results[variant]}), flush=True)
        table = summarise(results)
        with open(_OUT.value or os.path.join(_ROOT.value, "table.md"), "w") as f:
            f.write(table)
    print(table)


def _wait(jobs: list, runs: list) -> None:
    for workdir, proc, log in jobs:
        if proc.wait() != 0:
            raise RuntimeError(f"run {workdir} failed (exit {proc.returncode}); see {workdir}.log")
        log.close()
        with open(os.path.join(workdir, "metrics.json")) as f:
            runs.append(json.load(f))
    jobs.clear()


if __name__ == "__main__":
    app.run(main)
