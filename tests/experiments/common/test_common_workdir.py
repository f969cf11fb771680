"""`experiments.common.workdir`: the configs a run records, the checks before work, the lock."""

import math
import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from experiments.common import workdir as wd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_record_config_writes_the_original_once(tmp_path):
    run = str(tmp_path)
    wd.record_config(run, ml_collections.ConfigDict({"seed": 1}))
    wd.record_config(run, ml_collections.ConfigDict({"seed": 2}))
    assert (tmp_path / "config.json").read_text().count('"seed": 2') == 1
    assert open(wd.original_config_path(run)).read().count('"seed": 1') == 1


def test_check_config_numbers_names_every_non_finite_key():
    config = ml_collections.ConfigDict({"a": {"b": math.inf}, "c": [1.0, -math.inf], "d": 1.0})
    with pytest.raises(wd.ConfigError, match=r"config.a.b = inf, config.c = -inf"):
        wd.check_config_numbers(config)
    wd.check_config_numbers(ml_collections.ConfigDict({"d": 1e9}))


def test_logged_values_of_a_step_later_lines_winning(tmp_path):
    run = str(tmp_path)
    assert wd.logged_values(run, 2, ("train/",)) == {}  # no log yet
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "train/loss": 3.0}\n'
        '{"step": 2, "train/loss": 2.0, "train/grad_norm": 1.5}\n'
        '{"step": 2, "train/loss": 2.5, "val/nll": 7.0, "atom_stability": 0.5}\n'
        '{"step": 2, "train/lo'  # a line cut short by a killed run
    )
    values = wd.logged_values(run, 2, ("train/", "val/"))
    assert values == {"train/loss": 2.5, "train/grad_norm": 1.5, "val/nll": 7.0}
    assert wd.logged_values(run, 3, ("train/",)) == {}


def test_check_resumable(tmp_path):
    run = str(tmp_path)
    wd.check_resumable(run, has_checkpoints=False)  # a new workdir starts
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(wd.StaleWorkdirError, match="no checkpoint.*new --workdir"):
        wd.check_resumable(run, has_checkpoints=False)  # its checkpoints were deleted
    wd.check_resumable(run, has_checkpoints=True)
    wd.record_config(run, ml_collections.ConfigDict({"seed": 1}))
    wd.check_resumable(run, has_checkpoints=False)  # stopped before its first save


def test_hold_workdir_or_exit_stops_a_second_process(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from experiments.common.workdir import hold_workdir_or_exit
        hold_workdir_or_exit({str(tmp_path)!r})
        print("held", flush=True)
        time.sleep(float(sys.argv[1]))
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    first = subprocess.Popen(
        [sys.executable, "-c", script, "60"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "held"
        second = subprocess.run(
            [sys.executable, "-c", script, "0"], env=env, capture_output=True, text=True
        )
        assert second.returncode == 1 and "held" not in second.stdout
        assert second.stderr.startswith("error: ") and f"pid {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()
    again = subprocess.run([sys.executable, "-c", script, "0"], env=env, capture_output=True)
    assert again.returncode == 0  # the kernel released the killed holder's lock
