"""`kill -9` at random moments of a training run, each followed by a resume, ends exactly
where an uninterrupted run ends: the same final `train/loss` and bit-identical parameters.

The run is `configs/qm9_symdiff.py:smoke` for 12 steps with a checkpoint every step (the
cheapest config that checkpoints). Moments are drawn with a fixed seed from three kinds:
while a checkpoint is being written (its temporary directory exists, or just after it
is committed and before its manifest), a random time after a step was logged, and a random
time after the process started (start-up, restore, final evaluation). The kills are
chained: each resume may itself be killed; after the last kill a resume runs to the end.
Every start of a run compiles or loads its programs, so even the 3-kill case is slow.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.qm9 import model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 12
TRAIN = (
    "--config=configs/qm9_symdiff.py:smoke",
    f"--config.num_train_steps={NUM_STEPS}",
    "--config.train.checkpoint_every=1",
    "--config.train.log_every=1",
    "--config.train.eval_every=0",
    "--config.evaluate.num_samples=2",
    "--config.sample.num_steps=2",
)


def _command(workdir: str) -> list[str]:
    return [sys.executable, "-m", "experiments.train", *TRAIN, f"--workdir={workdir}"]


def _env(cache: str) -> dict:
    # The persistent compilation cache keeps each resume's start-up short.
    return dict(
        os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg", PYTHONPATH=REPO, SYMDIFF_JAX_CACHE=cache
    )


def _log_lines(workdir: str) -> int:
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _saving(workdir: str) -> bool:
    """A checkpoint is being written: a temporary step directory exists."""
    try:
        return any("tmp" in name for name in os.listdir(os.path.join(workdir, "checkpoints")))
    except OSError:
        return False


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 600) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            return True
        time.sleep(0.005)
    return False


def _final(workdir: str) -> tuple[float, list[np.ndarray]]:
    """The `train/loss` logged at the last step and the leaves of params and EMA params."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    losses = [r["train/loss"] for r in records if r.get("step") == NUM_STEPS and "train/loss" in r]
    assert losses, f"no train/loss at step {NUM_STEPS} in {workdir}"
    _, _, state = model.restore_workdir(workdir)
    assert int(state.step) == NUM_STEPS
    leaves = jax.tree.leaves((state.params, state.ema_params))
    return losses[-1], [np.asarray(x) for x in leaves]


def run_with_kills(workdir: str, cache: str, num_kills: int, seed: int) -> dict:
    """Trains into `workdir`, killing the process `num_kills` times; returns the tally."""
    rng = np.random.default_rng(seed)
    tally = {"kills": 0, "mid_save": 0, "after_step": 0, "after_start": 0, "missed": 0}
    env = _env(cache)
    while tally["kills"] < num_kills:
        proc = subprocess.Popen(
            _command(workdir), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        kind = rng.choice(["mid_save", "after_step", "after_start"], p=[0.5, 0.25, 0.25])
        delay = float(rng.uniform(0.0, 0.05 if kind == "mid_save" else 1.5))
        lines = _log_lines(workdir)
        if kind == "mid_save":
            ready = _wait_for(proc, lambda: _saving(workdir))
        elif kind == "after_step":
            ready = _wait_for(proc, lambda n=lines: _log_lines(workdir) > n)
        else:
            ready = proc.poll() is None
            delay = float(rng.uniform(0.0, 20.0))
        if ready:
            time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            tally["kills"] += 1
            tally[kind] += 1
        else:  # the run finished (or failed) first: it must have succeeded
            assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
            tally["missed"] += 1
            if os.path.exists(os.path.join(workdir, "metrics.json")):
                break  # a finished run: nothing left to kill
        proc.stderr.close()
    proc = subprocess.run(_command(workdir), cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tally


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache) -> tuple[float, list[np.ndarray]]:
    workdir = str(tmp_path_factory.mktemp("reference") / "run")
    proc = subprocess.run(
        _command(workdir), cwd=REPO, env=_env(cache), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _final(workdir)


def _assert_same(result, reference) -> None:
    loss, leaves = result
    ref_loss, ref_leaves = reference
    assert loss == ref_loss
    assert len(leaves) == len(ref_leaves)
    for a, b in zip(leaves, ref_leaves, strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.slow
def test_three_kills_then_resume_is_exact(tmp_path, cache, reference):
    workdir = str(tmp_path / "run")
    tally = run_with_kills(workdir, cache, num_kills=3, seed=0)
    assert tally["kills"] == 3, tally
    _assert_same(_final(workdir), reference)


@pytest.mark.slow
def test_twenty_kills_then_resume_is_exact(tmp_path, cache, reference):
    """20 kills over 4 runs of 5 (seeds 1-4); every run ends exactly as the reference."""
    tallies = []
    for seed in range(1, 5):
        workdir = str(tmp_path / f"run{seed}")
        tallies.append(run_with_kills(workdir, cache, num_kills=5, seed=seed))
        _assert_same(_final(workdir), reference)
    print("kill tallies:", tallies)
    assert sum(t["kills"] for t in tallies) == 20, tallies
