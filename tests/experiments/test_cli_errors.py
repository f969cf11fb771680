"""The command-line tools: each config mistake is one line on stderr and exit 2, `--help` exits 0.

Every bad case fails before JAX compiles anything (the checks run in the flag parser), so
these subprocesses take about a second each.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys

import pytest

from tests.cli_helpers import REPO, cli_env, run_cli

TOOLS = ("train", "sample", "evaluate", "benchmark")


def _assert_one_line_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


QM9 = "--config=configs/qm9_symdiff.py:smoke"
TOY = "--config=configs/toy_1d.py:smoke"
BAD_CONFIGS = {
    "unknown key": ([TOY, "--config.foo=1"], ["foo", "=1"]),
    "misspelt key": ([QM9, "--config.optim.learnig_rate=1e-3"], ["learnig_rate", "optim.learning_rate"]),
    "wrong type": ([QM9, "--config.batch_size=abc"], ["batch_size", "abc", "integer"]),
    "zero batch": ([QM9, "--config.batch_size=0"], ["batch_size", "0", ">= 1"]),
    "negative steps": ([QM9, "--config.num_train_steps=-1"], ["num_train_steps", "-1", ">= 0"]),
    "zero learning rate": ([QM9, "--config.optim.learning_rate=0"], ["learning_rate", "> 0"]),
    "nan learning rate": ([TOY, "--config.learning_rate=nan"], ["learning_rate", "nan", "> 0"]),
    "ema decay of one": ([QM9, "--config.optim.ema_decay=1.0"], ["ema_decay", "1.0", "[0, 1)"]),
    "zero samples": ([QM9, "--config.evaluate.num_samples=0"], ["evaluate.num_samples", ">= 1"]),
    "unknown budget clock": (["--config=configs/dw4.py:smoke", "--config.train.budget_clock=gpu"], ["budget_clock", "gpu", "'cpu'"]),
    "unknown size": (["--config=configs/qm9_symdiff.py:huge"], ["huge", "small", "smoke"]),
    "missing file": (["--config=configs/no_such_config.py"], ["no_such_config.py"]),
    "unknown flag": ([QM9, "--workdri=/tmp/x"], ["workdri"]),
    "unknown experiment": ([QM9, "--config.experiment=nope"], ["experiment", "nope", "qm9, toy_1d"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_and_exit_2(tmp_path, case):
    args, needles = BAD_CONFIGS[case]
    proc = run_cli("train", *args, f"--workdir={tmp_path / 'run'}")
    _assert_one_line_usage_error(proc, *needles)
    assert not (tmp_path / "run").exists(), "nothing may start before the config is checked"


# The other tools: a flag or config value out of range.
BAD_FLAGS = {
    "sample zero samples": ("sample", ["--pretrained=qm9_symdiff_cpu", "--num_samples=0"], ["num_samples", "0"]),
    "evaluate zero runs": ("evaluate", ["--pretrained=qm9_symdiff_cpu", "--num_runs=0"], ["num_runs", "0"]),
    "benchmark zero batch": ("benchmark", [QM9, "--batch_size=0"], ["batch_size", "0"]),
    "benchmark zero scan steps": ("benchmark", [QM9, "--scan_steps=0"], ["scan_steps", "0"]),
    "benchmark too few timed steps": ("benchmark", [QM9, "--num_steps=3"], ["num_steps", "3", "10"]),
    "benchmark no warmup": ("benchmark", [QM9, "--warmup=0"], ["warmup", "0"]),
    "benchmark config out of range": ("benchmark", [QM9, "--config.batch_size=0"], ["batch_size", ">= 1"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flag_of_each_tool_is_one_line_and_exit_2(case):
    tool, args, needles = BAD_FLAGS[case]
    _assert_one_line_usage_error(run_cli(tool, *args), *needles)


def test_unknown_key_names_the_closest_valid_keys(tmp_path):
    proc = run_cli("train", TOY, "--config.sed=3", f"--workdir={tmp_path}")
    line = _assert_one_line_usage_error(proc, "sed")
    assert line.split("closest to it:")[1].split(",")[0].strip() == "seed"


def test_molecules_source_errors_are_one_line(tmp_path):
    molecules = "--config=configs/molecules.py:smoke"
    _assert_one_line_usage_error(run_cli("train", molecules), "data.source", "empty")
    (tmp_path / "empty").mkdir()
    _assert_one_line_usage_error(
        run_cli("train", molecules, f"--config.data.source={tmp_path / 'empty'}"), "without .sdf"
    )
    bad = tmp_path / "bad.sdf"
    bad.write_text("not a mol block\n$$$$\n")
    line = _assert_one_line_usage_error(
        run_cli("train", molecules, f"--config.data.source={bad}", f"--workdir={tmp_path / 'r'}"),
        "bad.sdf",
        "record 0",
    )
    assert "no usable molecules" in line
    _assert_one_line_usage_error(
        run_cli("train", molecules, f"--config.data.source={tmp_path / 'nowhere.sdf'}"),
        "nowhere.sdf",
        "does not exist",
    )


@pytest.mark.parametrize("tool", TOOLS)
def test_help_exits_0(tool):
    proc = run_cli(tool, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"experiments.{tool}" in proc.stdout and "--" in proc.stdout
    assert "Unable to initialize backend" not in proc.stderr


def _console_scripts() -> dict[str, str]:
    """`name -> module:function` of setup.cfg's console_scripts."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


@pytest.mark.parametrize("tool", TOOLS)
def test_console_script_resolves_and_its_help_exits_0(tool):
    """`symdiff-<tool>` names a callable `cli` that parses flags like `python -m`."""
    target = _console_scripts()[f"symdiff-{tool}"]
    assert target == f"experiments.{tool}:cli"
    module, function = target.split(":")
    # What the installed script does: import the target and call it.
    code = f"import sys; from {module} import {function} as f; sys.argv[0] = 'x'; f()"
    env = cli_env()
    proc = subprocess.run(
        [sys.executable, "-c", code, "--help"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"experiments.{tool}" in proc.stdout
