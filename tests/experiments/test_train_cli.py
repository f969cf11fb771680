"""End to end: `python -m experiments.train` on smoke configs, and its errors."""

import json
import os

import pytest

from tests.cli_helpers import run_cli


@pytest.mark.parametrize("config", ["configs/toy_1d.py:smoke", "configs/toy_2d.py:smoke"])
def test_smoke_run_writes_config_and_metrics(tmp_path, config):
    workdir = tmp_path / "run"
    proc = run_cli("train", f"--config={config}", f"--workdir={workdir}", "--config.seed=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(workdir / "config.json") as f:
        saved = json.load(f)
    assert saved["seed"] == 1, "the --config.seed override must reach config.json"
    with open(workdir / "metrics.json") as f:
        metrics = json.load(f)
    rmsd_keys = [k for k in metrics if k.startswith("rmsd/")]
    assert rmsd_keys, f"no rmsd metrics in {sorted(metrics)}"
    assert all(isinstance(metrics[k], float) for k in rmsd_keys)
    assert metrics["params"] > 0 and isinstance(metrics["train/loss"], float)


def test_unknown_override_lists_valid_keys(tmp_path):
    proc = run_cli(
        "train", "--config=configs/toy_1d.py:smoke", "--config.sed=3", f"--workdir={tmp_path}"
    )
    assert proc.returncode != 0
    assert "sed" in proc.stderr and "seed" in proc.stderr
    assert "Valid keys" in proc.stderr
    assert not os.path.exists(tmp_path / "metrics.json")


def test_unknown_experiment_is_named(tmp_path):
    cfg = tmp_path / "bad.py"
    cfg.write_text(
        "import ml_collections\n"
        "def get_config(arg=None):\n"
        "    return ml_collections.ConfigDict({'experiment': 'no_such_thing', 'seed': 0})\n"
    )
    proc = run_cli("train", f"--config={cfg}", f"--workdir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "no_such_thing" in proc.stderr and "toy_1d" in proc.stderr


def test_main_job_smoke_writes_the_four_generation_metrics(tmp_path):
    """`configs/default.py` (the README's first command) at smoke size, through the CLI."""
    pytest.importorskip("qm9pack")
    workdir = tmp_path / "run"
    proc = run_cli("train", "--config=configs/default.py:smoke", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(workdir / "metrics.json") as f:
        metrics = json.load(f)
    for key in ("atom_stability", "molecule_stability", "validity", "uniqueness"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["params"] > 0 and metrics["steps"] == 4
    assert os.path.exists(workdir / "samples" / "samples.png")
    assert os.path.exists(workdir / "samples" / "samples.sdf")
