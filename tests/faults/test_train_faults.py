"""Faults a user meets through the command lines: two runs on one workdir, a resume with
another model, deleted checkpoints, a diverging learning rate, a damaged config.json, a
sample count that cannot fit.

Each case asserts a clear one-line `error:` (no traceback), a non-zero exit, and that
nothing of the workdir was lost (its configs byte for byte, its checkpoints still sample).
All runs are `configs/qm9_symdiff.py:smoke` cut to two steps.
"""

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from symdiff_jax.train import Checkpointer
from tests.cli_helpers import REPO, cli_env, run_cli

SMOKE = (
    "--config=configs/qm9_symdiff.py:smoke",
    "--config.num_train_steps=2",
    "--config.train.checkpoint_every=1",
    "--config.train.eval_every=0",
    "--config.evaluate.num_samples=2",
    "--config.sample.num_steps=2",
)
SAMPLE = ("--num_samples=2", "--num_steps=2", "--noprogress", "--nopicture")


def original_config_path(workdir: str) -> str:
    """Where a run keeps the config its checkpoints were made with."""
    return os.path.join(workdir, "checkpoints", "config.json")


def _assert_clear_error(proc: subprocess.CompletedProcess, *phrases: str) -> str:
    """A non-zero exit with an `error:` line holding `phrases`, and no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def _digests(workdir: str) -> dict[str, str]:
    """sha256 of every file of a workdir (the lock file aside)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(workdir, "**", "*"), recursive=True)):
        if os.path.isfile(path) and not path.endswith("run.lock"):
            with open(path, "rb") as f:
                out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
    """A two-step smoke run trained through the CLI (checkpoints at steps 1 and 2)."""
    workdir = str(tmp_path_factory.mktemp("faults") / "run")
    proc = run_cli("train", *SMOKE, f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def _copy(trained: str, tmp_path) -> str:
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    return workdir


def test_second_run_on_a_workdir_stops_at_once_naming_the_holder(tmp_path):
    workdir = str(tmp_path / "busy")
    first = subprocess.Popen(
        [sys.executable, "-m", "experiments.train", *SMOKE, "--config.num_train_steps=100000"]
        + [f"--workdir={workdir}"],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = os.path.join(workdir, "run.lock")
        deadline = time.time() + 300
        while time.time() < deadline:
            if os.path.exists(lock) and open(lock).read().startswith(f"pid {first.pid} "):
                break
            assert first.poll() is None, "the first run ended before taking its lock"
            time.sleep(0.2)
        else:
            pytest.fail("the first run never took its lock")
        second = run_cli("train", *SMOKE, f"--workdir={workdir}", timeout=120)
        _assert_clear_error(second, f"pid {first.pid}", "in use by another run")
        sampler = run_cli("sample", f"--workdir={workdir}", *SAMPLE, timeout=120)
        _assert_clear_error(sampler, f"pid {first.pid}")
        assert first.poll() is None, "the second run disturbed the first"
    finally:
        first.kill()
        first.wait()


def test_failed_resume_keeps_the_config_and_the_run_still_samples(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    before = _digests(workdir)
    proc = run_cli("train", *SMOKE, f"--workdir={workdir}", "--config.model.hidden=64")
    _assert_clear_error(proc, "does not match checkpoint step 2")
    assert _digests(workdir) == before  # config.json and checkpoints byte for byte
    out = str(tmp_path / "samples")
    proc = run_cli("sample", f"--workdir={workdir}", f"--out={out}", *SAMPLE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.exists(os.path.join(out, "samples.npz"))


def test_original_config_is_written_once_and_sampling_reads_it(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    with open(original_config_path(workdir), "rb") as f:
        original = f.read()
    assert json.loads(original)["num_train_steps"] == 2
    # A longer resume rewrites config.json but never the original.
    proc = run_cli("train", *SMOKE, f"--workdir={workdir}", "--config.num_train_steps=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["num_train_steps"] == 3
    with open(original_config_path(workdir), "rb") as f:
        assert f.read() == original
    # A config.json damaged after the run is not read by sampling.
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write("{broken")
    proc = run_cli("sample", f"--workdir={workdir}", f"--out={tmp_path / 's'}", *SAMPLE)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_deleted_checkpoints_are_not_silently_retrained(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    shutil.rmtree(os.path.join(workdir, "checkpoints"))
    before = _digests(workdir)
    proc = run_cli("train", *SMOKE, f"--workdir={workdir}")
    _assert_clear_error(proc, "no checkpoint", "metrics.jsonl", "new --workdir")
    assert _digests(workdir) == before  # metrics.jsonl not appended to


def test_malformed_config_json_is_reported_with_its_path(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    path = original_config_path(workdir)
    with open(path, "w") as f:
        f.write('{"seed": 1,')
    proc = run_cli("sample", f"--workdir={workdir}", *SAMPLE)
    _assert_clear_error(proc, path, "not valid JSON")


def test_non_finite_config_json_is_refused_with_its_path(trained, tmp_path):
    """Older runs stored NaN as the text "nan"; sampling then crashed with a TypeError."""
    workdir = _copy(trained, tmp_path)
    path = original_config_path(workdir)
    with open(path) as f:
        config = json.load(f)
    config["optim"]["learning_rate"] = "nan"
    with open(path, "w") as f:
        json.dump(config, f)
    proc = run_cli("sample", f"--workdir={workdir}", *SAMPLE)
    _assert_clear_error(proc, path, "config.optim.learning_rate = 'nan'")


def test_a_huge_sample_count_is_refused_before_any_work(trained):
    t0 = time.time()
    proc = run_cli("sample", f"--workdir={trained}", "--num_samples=1000000000", "--noprogress")
    _assert_clear_error(proc, "--num_samples 1000000000 needs about", "GiB", "lower")
    assert time.time() - t0 < 120
    assert not glob.glob(os.path.join(trained, "samples_*n1000000000*"))


def test_a_diverging_learning_rate_keeps_only_finite_checkpoints(tmp_path):
    """lr = 1e9: the run stops at the first unsound step; the checkpoint it names as kept
    is the newest on disk, and every checkpoint on disk is finite."""
    workdir = str(tmp_path / "diverged")
    proc = run_cli(
        "train",
        *SMOKE,
        "--config.num_train_steps=4",
        "--config.optim.learning_rate=1e9",
        f"--workdir={workdir}",
    )
    line = _assert_clear_error(proc, "Non-finite loss")
    with Checkpointer(os.path.join(workdir, "checkpoints")) as ckpt:
        steps = ckpt.all_steps()
    kept = steps[-1] if steps else None
    assert f"The last checkpoint (step {kept})" in line
    from experiments.qm9 import evaluate as evaluation

    for step in steps:
        params = evaluation.load_run(workdir, str(step)).params
        import jax

        for leaf in jax.tree.leaves(params):
            assert np.all(np.isfinite(np.asarray(leaf))), f"step {step} holds non-finite values"
