"""`kill -9` at random moments of a training run, each followed by a resume, ends exactly
where an uninterrupted run ends: the same final `train/loss`, the same `train/loss` at every
logged step, and bit-identical arrays in the final checkpoint (parameters, EMA parameters,
optimizer state).

Both tests drive `scripts/kill_resume.py` (see its docstring for the kinds of kill
moments, among them kills timed to land while a checkpoint is being written) in a
separate process on `configs/dw4.py:smoke` for 12 steps with a checkpoint after every
step. Every run pays its start-up (data, model, compilation cache), so even the 3-kill
case takes a few minutes on two cores.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "kill_resume.py")


def _kill_resume(tmp_path, *flags: str) -> dict:
    out = tmp_path / "report.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg", PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, SCRIPT, *flags, f"--root={tmp_path / 'runs'}", f"--json={out}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    print(proc.stdout)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert proc.returncode == 0, proc.stdout[-3000:]  # 0: every chain ended exactly
    return report


def _assert_exact(report: dict, num_kills: int) -> None:
    s = report["summary"]
    assert s["kills"] == num_kills, s
    assert s["final_runs_ok"] == s["chains"], s
    assert s["loss_equal"] and s["logged_losses_equal"], s
    assert s["arrays_differing"] == 0 and s["max_abs_diff"] == 0.0, s
    assert s["damaged_warnings"] == 0, s
    for chain in report["chains"]:
        assert chain["result"]["arrays"] > 0
        assert chain["result"]["final_loss"] == chain["result"]["ref_final_loss"]


@pytest.mark.slow
def test_three_kills_then_resume_is_exact(tmp_path):
    report = _kill_resume(tmp_path, "--num_kills=3", "--seed=0", "--steps=6")
    _assert_exact(report, 3)
    assert "save" in [k["kind"] for c in report["chains"] for k in c["kills"]]


@pytest.mark.slow
def test_twenty_kills_then_resume_is_exact(tmp_path):
    report = _kill_resume(tmp_path, "--num_kills=20", "--seed=1")
    _assert_exact(report, 20)
    assert report["summary"]["during_save"] >= 1, report["summary"]
