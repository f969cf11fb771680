"""Scoring a trained particle run again: `evaluate_particle_run` and the evaluate command."""

import json
import os

import jax
import numpy as np
import pytest

import configs
from experiments.common.io import write_config, write_metrics
from experiments.particles import evaluate as particle_evaluation
from experiments.particles import train as particle_train
from experiments.particles.input_pipeline import load_splits
from symdiff_jax.systems import get_system
from tests.cli_helpers import run_cli

EVAL_KEYS = ("energy_w2", "distance_w2", "distance_tv", "high_energy_frac", "sample_s_per_1000")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished DW4 EGNN-flow smoke run, trained in this process: `(config, workdir)`."""
    config = configs.get_config("dw4", "egnn_flow,smoke")
    config.data.cache_dir = str(tmp_path_factory.mktemp("particles"))
    workdir = str(tmp_path_factory.mktemp("run"))
    metrics = particle_train.run(config, workdir)
    write_config(workdir, config)
    write_metrics(workdir, metrics)
    return config, workdir


def test_restored_run_scores_like_the_trained_parameters(trained):
    config, workdir = trained
    run = particle_evaluation.load_particle_run(workdir)
    assert run.step == config.num_train_steps
    key = jax.random.key(5)
    got = particle_evaluation.evaluate_particle_run(
        run, key, num_samples=12, num_steps=3, batch_size=12
    )
    assert got["eval/num_samples"] == 12 and got["eval/num_steps"] == 3
    assert got["eval/reference"] == "own test"
    # The same draw, scored by hand on our test split with the system's energy.
    scoring = config.copy_and_resolve_references()
    scoring.sample.num_steps, scoring.sample.batch_size = 3, 12
    reference = load_splits(scoring)["test"]
    samples, direct = particle_evaluation.sample_and_score(
        scoring, run.graphdef, run.params, key, reference, num_samples=12, nll_samples=4
    )
    assert samples.shape == (12, 4, 2)
    for name in ("energy_w2", "distance_w2", "distance_tv", "high_energy_frac", "nll"):
        assert got[f"eval/{name}"] == pytest.approx(direct[name], rel=1e-6), name
    energies = np.asarray(get_system("dw4").energy(samples))
    expected = np.mean(energies > np.asarray(get_system("dw4").energy(reference)).max())
    assert got["eval/high_energy_frac"] == pytest.approx(expected)
    assert got["eval/nll_samples"] == 4


def test_command_merges_eval_metrics_and_keeps_the_training_ones(trained, tmp_path):
    config, workdir = trained
    with open(os.path.join(workdir, "metrics.json")) as f:
        before = json.load(f)
    proc = run_cli(
        "evaluate",
        f"--workdir={workdir}",
        "--num_samples=10",
        "--num_steps=2",
        "--notest_nll",
        "--noprogress",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, "metrics.json")) as f:
        after = json.load(f)
    assert {k: after[k] for k in before} == before
    for name in EVAL_KEYS:
        assert isinstance(after[f"eval/{name}"], float), (name, after)
    assert after["eval/num_samples"] == 10 and "eval/nll" not in after
    assert "particle evaluation" in proc.stdout

    # A reference folder without the published files: one line, exit 1, nothing written.
    missing = tmp_path / "no_splits"
    missing.mkdir()
    proc = run_cli(
        "evaluate", f"--workdir={workdir}", f"--reference={missing}", "--num_samples=4", timeout=600
    )
    assert proc.returncode == 1
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(missing) in error_lines[0], proc.stderr[-2000:]
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f) == after


def test_sample_command_writes_samples_picture_and_summary(trained, tmp_path):
    _, workdir = trained
    out = tmp_path / "drawn"
    proc = run_cli(
        "sample",
        f"--workdir={workdir}",
        "--num_samples=6",
        "--num_steps=2",
        "--seed=3",
        f"--out={out}",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = np.load(out / "samples.npy")
    assert samples.shape == (6, 4, 2) and np.isfinite(samples).all()
    assert np.abs(samples.mean(axis=1)).max() <= 1e-5 * max(1.0, np.abs(samples).max())
    assert (out / "histograms.png").stat().st_size > 0
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert (summary["num_samples"], summary["num_steps"], summary["seed"]) == (6, 2, 3)
    assert summary["reference"] == "own test"
    energies = np.asarray(get_system("dw4").energy(samples), np.float64)
    reference = np.asarray(get_system("dw4").energy(load_splits(trained[0])["test"]), np.float64)
    assert summary["high_energy_frac"] == pytest.approx(np.mean(energies > reference.max()))

    proc = run_cli("sample", f"--workdir={workdir}", "--sampler=ddim", f"--out={out}2")
    assert proc.returncode == 1 and not (tmp_path / "drawn2").exists()
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --sampler does not apply")
