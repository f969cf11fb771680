"""`experiments.particles.compare`: the run command, the table, and a comparison that continues."""

import json
import os

import numpy as np

from experiments.particles import compare
from tests.cli_helpers import run_cli


def test_run_command_sets_the_budget_its_clock_and_the_seed():
    cmd = compare.run_command("lj13", "symdiff_h", 2, "/w", 90.0, 500, ["--config.x=1"], "cpu")
    assert cmd[1:3] == ["-m", "experiments.train"]
    for part in (
        "--config=configs/lj13.py:symdiff_h",
        "--workdir=/w",
        "--config.seed=2",
        "--config.train.time_budget_s=90.0",
        "--config.train.budget_clock=cpu",
        "--config.evaluate.num_samples=500",
        "--config.x=1",
    ):
        assert part in cmd, part


def _runs(rng, n, nll=False):
    runs = []
    for _ in range(n):
        run = {"steps": int(rng.integers(100, 200)), "energy_w2": float(rng.random())}
        run.update(distance_tv=float(rng.random()), sample_s_per_1000=float(rng.random()))
        if nll:
            run["nll"] = float(rng.normal())
        runs.append(run)
    return runs


def test_the_table_gives_mean_and_sample_std_over_seeds():
    rng = np.random.default_rng(0)
    results = {"egnn_flow": _runs(rng, 3, nll=True), "symdiff": _runs(rng, 1)}
    lines = compare.summarise(results).splitlines()
    assert lines[0].split("|")[1:-1] == [
        " variant ", " seeds ", " steps ", " energy_w2 ", " distance_tv ",
        " sample_s_per_1000 ", " nll ",
    ]  # fmt: skip
    egnn = [c.strip() for c in lines[2].split("|")[1:-1]]
    e = [r["energy_w2"] for r in results["egnn_flow"]]
    assert egnn[:3] == [
        "egnn_flow",
        "3",
        f"{np.mean([r['steps'] for r in results['egnn_flow']]):.0f}",
    ]
    assert egnn[3] == f"{np.mean(e):.3g} +- {np.std(e, ddof=1):.2g}"
    single = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert single[3].endswith("+- 0") and single[-1] == "-"  # one seed: no spread; no NLL


def test_finished_runs_are_read_not_repeated(tmp_path):
    """With every run's metrics.json present, no training starts (a started run would fail
    on the bad override) and the table is written from the files."""
    rng = np.random.default_rng(1)
    runs = _runs(rng, 2)
    for seed, run in enumerate(runs):
        os.makedirs(tmp_path / f"dit_seed{seed}")
        (tmp_path / f"dit_seed{seed}" / "metrics.json").write_text(json.dumps(run))
    proc = run_cli(
        "particles.compare", "--variants=dit", "--seeds=0,1", f"--root={tmp_path}",
        "--override=no_such_key=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (tmp_path / "table.md").read_text()
    assert table == compare.summarise({"dit": runs})
