r"""`kill -9` a smoke training run at random moments, resume it each time, and check that it
ends exactly where an uninterrupted run ends.

    python scripts/kill_resume.py --num_kills 20 --seed 0
    python scripts/kill_resume.py --num_kills 3 --json /tmp/kills.json --mode spawn

The run is `experiments.train` on `--config` (default `configs/dw4.py:smoke`, the cheapest
config that checkpoints) for `--steps` steps with a checkpoint after every step. First an
uninterrupted reference run; then chains of runs in fresh workdirs: each run of a chain
resumes the workdir left by the previous one and is killed with SIGKILL at a moment drawn
from `--seed`, until the chain has had `--kills_per_chain` kills or a run finishes; a last
run resumes the chain to the end. Each moment targets a step drawn uniformly from the steps
the run still has to do (so a chain moves through the whole run) and is of one of four kinds:

  save   the moment the save of the target step (or a later one) has started (its Orbax
         temporary directory appeared), plus a uniform delay in [0, 0.15] s: the kill lands
         in the write, the commit, or between the commit and the content manifest;
  step   a uniform delay in [0, 1.5] s after the target step is logged;
  start  a uniform delay in [0, 25] s after the process started (start-up, restore,
         compilation, the first steps);
  final  a uniform delay in [0, 10] s after the last step is logged (the last save, the
         final evaluation, the metrics files).

Where a kill landed is read from the disk after the process is dead: a temporary step
directory of that run still present ("write": the save had not committed), or a newest
step directory without its manifest ("commit": committed, manifest not yet written).

`--mode fork` (default) starts every run as a fork of this process after it imported the
training program (not yet touching a device), so a run skips the ~15 s of Python imports;
`--mode spawn` starts `python -m experiments.train` instead. In both, the run is a separate
process that receives SIGKILL. The end of every chain is compared with the reference:
the `train/loss` of the last step (in `metrics.jsonl` and `metrics.json`), every
`train/loss` logged for a step (resumed steps are logged again), and every array of the
final checkpoint (parameters, EMA parameters, optimizer state, step), bit for bit.

Prints one row per kill and a summary; `--json` also writes them. Exit status 0 if every
chain ended exactly as the reference, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

KINDS = ("save", "step", "start", "final")
KIND_PROBABILITIES = (0.45, 0.25, 0.15, 0.15)
DELAYS_S = {"save": 0.15, "step": 1.5, "start": 25.0, "final": 10.0}
RUN_TIMEOUT_S = 900.0
TMP_MARK = "orbax-checkpoint-tmp"
MANIFEST_FILE = "sha256_manifest.json"


def train_args(config: str, steps: int, workdir: str) -> list[str]:
    """The flags of every run: `steps` steps, a checkpoint and a log line after each."""
    return [
        f"--config={config}",
        f"--config.num_train_steps={steps}",
        "--config.train.checkpoint_every=1",
        "--config.train.log_every=1",
        "--config.train.eval_every=0",
        f"--workdir={workdir}",
    ]


class Run:
    """One training process writing its output to `log_path`."""

    def __init__(self, args: list[str], log_path: str, mode: str, env: dict[str, str]):
        self.started = time.time()
        self.log_path = log_path
        self.returncode: int | None = None
        if mode == "spawn":
            with open(log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "experiments.train", *args],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self.pid = self._proc.pid
        else:
            self._proc = None
            self.pid = os.fork()
            if self.pid == 0:
                _run_in_child(args, log_path)  # never returns

    def poll(self) -> int | None:
        """The exit status once the process ended (-9 when killed), else None."""
        if self.returncode is None:
            if self._proc is not None:
                self.returncode = self._proc.poll()
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> int:
        deadline = time.time() + timeout
        while self.poll() is None:
            if time.time() > deadline:
                self.kill()
                raise TimeoutError(f"run {self.pid} did not end within {timeout:.0f} s")
            time.sleep(0.05)
        return self.returncode

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        while self.poll() is None:
            time.sleep(0.001)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def _run_in_child(args: list[str], log_path: str) -> None:
    """The body of a forked run: `experiments.train` with `args`, output to `log_path`."""
    code = 1
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        from absl import app

        from experiments import train

        sys.argv = ["experiments.train", *args]  # the config flag reads its overrides here
        app.run(train.main, argv=sys.argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _listing(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _log_lines(workdir: str) -> int:
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _wait_for(run: Run, condition: Callable[[], bool], poll_s: float) -> bool:
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline and run.poll() is None:
        if condition():
            return True
        time.sleep(poll_s)
    return False


def _new_entries(checkpoints: str, since: float) -> list[str]:
    """The temporary step directories of `checkpoints` created or renamed after `since`.

    Orbax names a save's temporary directory `<step>.orbax-checkpoint-tmp` and reuses the
    name of one left by a killed run, so the change time tells a new one from a stale one.
    """
    out = []
    for name in _listing(checkpoints):
        if TMP_MARK in name:
            try:
                if os.stat(os.path.join(checkpoints, name)).st_ctime >= since:
                    out.append(name)
            except OSError:  # committed (renamed) meanwhile
                pass
    return out


def landed(checkpoints: str, since: float) -> str:
    """Where a dead run started at `since` was in a save: "write", "commit" or "-".

    "write": a temporary step directory it made is still there (the save had not been
    committed); "commit": the newest step directory was committed by it (renamed after
    `since`) and has no content manifest yet.
    """
    if _new_entries(checkpoints, since):
        return "write"
    steps = sorted(int(n) for n in _listing(checkpoints) if n.isdigit())
    if steps:
        newest = os.path.join(checkpoints, str(steps[-1]))
        if not os.path.exists(os.path.join(newest, MANIFEST_FILE)):
            if os.stat(newest).st_ctime >= since:
                return "commit"
    return "-"


def _last_logged_step(workdir: str) -> int:
    """The step of the last line of `metrics.jsonl` (0 if none)."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            lines = f.read().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def resume_outcome(log: str) -> dict[str, Any]:
    """What a run's log says about its start: the step resumed from and any warnings."""
    found = re.findall(r"Resumed from step (\d+)", log)
    return {
        "resumed_from": int(found[-1]) if found else 0,
        "unverified": "has no content manifest" in log,
        "damaged": "is damaged" in log or "damaged step directories" in log,
    }


def _new_run(args, workdir, logs, count, mode, env) -> Run:
    return Run(args, os.path.join(logs, f"run{count:03d}.log"), mode, env)


def _newest_step(checkpoints: str) -> int:
    """The newest committed step on disk (0 if none)."""
    return max((int(n) for n in _listing(checkpoints) if n.isdigit()), default=0)


def _saving_step(checkpoints: str, since: float) -> int:
    """The largest step whose save started after `since` and is not yet committed (0: none)."""
    return max((int(n.split(".")[0]) for n in _new_entries(checkpoints, since)), default=0)


def draw_moment(rng, done: int, steps: int) -> tuple[str, int, float]:
    """A kill moment `(kind, target step, delay)` for a run resuming after step `done`.

    The target step is uniform over the steps still to run, so a chain of kills moves
    through the whole run; "save" and "step" need one, "final" targets the last step.
    """
    kind = str(rng.choice(KINDS, p=KIND_PROBABILITIES))
    target = int(rng.integers(done + 1, steps + 1)) if done < steps else steps
    if kind in ("save", "step") and done >= steps:
        kind = "start"
    delay = float(rng.uniform(0.0, DELAYS_S[kind]))
    return kind, (steps if kind == "final" else 0 if kind == "start" else target), delay


def run_chain(
    workdir: str,
    args: list[str],
    steps: int,
    rng,
    max_kills: int,
    logs: str,
    mode: str,
    env: dict[str, str],
    counter: list[int],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Kills runs in `workdir` up to `max_kills` times, then resumes it to the end.

    Returns:
      The kill records and the record of the final run.
    """
    checkpoints = os.path.join(workdir, "checkpoints")
    kills: list[dict[str, Any]] = []
    finished = False  # a run ended before its kill moment
    while len(kills) < max_kills:
        kind, target, delay = draw_moment(rng, _newest_step(checkpoints), steps)
        lines = _log_lines(workdir)
        counter[0] += 1
        run = _new_run(args, workdir, logs, counter[0], mode, env)
        if kind == "save":
            ready = _wait_for(
                run, lambda r=run, t=target: _saving_step(checkpoints, r.started) >= t, 0.002
            )
        elif kind in ("step", "final"):
            ready = _wait_for(
                run,
                lambda n=lines, t=target: (
                    _log_lines(workdir) > n and _last_logged_step(workdir) >= t
                ),
                0.01,
            )
        else:
            ready, delay = True, max(0.0, run.started + delay - time.time())
        if ready:
            time.sleep(delay)
        if run.poll() is None:
            run.kill()
            kills.append(
                {
                    "kind": kind,
                    "target_step": target,
                    "at_s": round(time.time() - run.started, 2),
                    "last_logged_step": _last_logged_step(workdir),
                    "save": landed(checkpoints, run.started),
                    **{f"this_run_{k}": v for k, v in resume_outcome(run.log()).items()},
                    "log": run.log_path,
                }
            )
            continue
        if run.returncode != 0:  # a run may end first, but only successfully
            raise RuntimeError(f"run exited with {run.returncode}; see {run.log_path}")
        finished = True
        break  # it finished before the kill: the chain is complete
    counter[0] += 1
    final = _new_run(args, workdir, logs, counter[0], mode, env)
    code = final.wait()
    outcome = resume_outcome(final.log())
    return kills, {"returncode": code, "missed": finished, **outcome, "log": final.log_path}


def _loss_log(workdir: str) -> dict[int, list[float]]:
    """Every `train/loss` of `metrics.jsonl` by step (lines cut short by a kill skipped)."""
    from symdiff_jax.train import read_metrics_jsonl

    out: dict[int, list[float]] = {}
    for record in read_metrics_jsonl(workdir, skip_invalid=True):
        if "train/loss" in record:
            out.setdefault(int(record["step"]), []).append(record["train/loss"])
    return out


def final_state(workdir: str, steps: int) -> dict[str, Any]:
    """The flat arrays of the checkpoint of step `steps` (read without a target)."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    path = os.path.join(workdir, "checkpoints", str(steps), "default")
    tree = ocp.StandardCheckpointer().restore(path)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in flat}


def compare(workdir: str, reference: str, steps: int) -> dict[str, Any]:
    """The end of `workdir` against the reference: losses and every checkpointed array."""
    import numpy as np

    ref_log, log = _loss_log(reference), _loss_log(workdir)
    with open(os.path.join(workdir, "metrics.json")) as f:
        final_loss = json.load(f).get("train/loss")  # None: missing, a failure below
    with open(os.path.join(reference, "metrics.json")) as f:
        ref_final_loss = json.load(f)["train/loss"]
    mismatched = sorted(
        s for s, values in log.items() if any(v != ref_log.get(s, [None])[-1] for v in values)
    )
    a, b = final_state(workdir, steps), final_state(reference, steps)
    if set(a) != set(b):
        raise RuntimeError(f"checkpoint trees differ: {sorted(set(a) ^ set(b))[:5]}")
    max_diff, differing = 0.0, 0
    for name in a:
        if a[name].tobytes() != b[name].tobytes():
            differing += 1
        if np.issubdtype(a[name].dtype, np.number):
            diff = np.abs(a[name].astype(np.float64) - b[name].astype(np.float64))
            max_diff = max(max_diff, float(diff.max(initial=0.0)))
    return {
        "final_loss": log[steps][-1],
        "final_loss_json": final_loss,
        "ref_final_loss": ref_log[steps][-1],
        "loss_equal": log[steps][-1] == ref_log[steps][-1] and final_loss == ref_final_loss,
        "steps_with_other_losses": mismatched,
        "missing_steps": sorted(set(ref_log) - set(log)),
        "arrays": len(a),
        "arrays_differing": differing,
        "max_abs_diff": max_diff,
    }


def experiment(
    num_kills: int,
    seed: int,
    config: str,
    steps: int,
    kills_per_chain: int,
    root: str,
    mode: str,
) -> dict[str, Any]:
    """Runs the reference and the killed chains under `root`; returns every record."""
    import numpy as np

    rng = np.random.default_rng(seed)
    logs = os.path.join(root, "logs")
    os.makedirs(logs, exist_ok=True)
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg", PYTHONPATH=REPO)
    os.environ.update(JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    if mode == "fork":  # import the training program once; no device is touched here
        from experiments import train

        train.experiments()
    counter = [0]
    t0 = time.time()
    reference = os.path.join(root, "reference")
    counter[0] += 1
    ref_run = _new_run(train_args(config, steps, reference), reference, logs, 1, mode, env)
    if ref_run.wait() != 0:
        raise RuntimeError(f"the reference run failed; see {ref_run.log_path}")
    chains = []
    total = 0
    while total < num_kills:
        workdir = os.path.join(root, f"chain{len(chains)}")
        args = train_args(config, steps, workdir)
        budget = min(kills_per_chain, num_kills - total)
        kills, final = run_chain(workdir, args, steps, rng, budget, logs, mode, env, counter)
        total += len(kills)
        chains.append({"workdir": workdir, "kills": kills, "final": final})
    for chain in chains:  # after the last fork: this process may now use JAX
        chain["result"] = compare(chain["workdir"], reference, steps)
    return {
        "config": config,
        "steps": steps,
        "seed": seed,
        "mode": mode,
        "runs": counter[0],
        "wall_s": round(time.time() - t0, 1),
        "chains": chains,
        "summary": summarise(chains),
    }


def summarise(chains: list[dict[str, Any]]) -> dict[str, Any]:
    kills = [k for c in chains for k in c["kills"]]
    results = [c["result"] for c in chains]
    return {
        "kills": len(kills),
        "during_save": sum(k["save"] != "-" for k in kills),
        "during_save_write": sum(k["save"] == "write" for k in kills),
        "during_save_commit": sum(k["save"] == "commit" for k in kills),
        "chains": len(chains),
        "missed_kills": sum(c["final"]["missed"] for c in chains),
        "final_runs_ok": sum(c["final"]["returncode"] == 0 for c in chains),
        "unverified_resumes": sum(k["this_run_unverified"] for k in kills)
        + sum(c["final"]["unverified"] for c in chains),
        "damaged_warnings": sum(k["this_run_damaged"] for k in kills)
        + sum(c["final"]["damaged"] for c in chains),
        "loss_equal": all(r["loss_equal"] for r in results),
        "logged_losses_equal": all(
            not r["steps_with_other_losses"] and not r["missing_steps"] for r in results
        ),
        "arrays_differing": sum(r["arrays_differing"] for r in results),
        "max_abs_diff": max((r["max_abs_diff"] for r in results), default=0.0),
    }


def exact(report: dict[str, Any]) -> bool:
    """True if every chain ended exactly as the reference."""
    s = report["summary"]
    return (
        s["final_runs_ok"] == s["chains"]
        and s["loss_equal"]
        and s["logged_losses_equal"]
        and s["arrays_differing"] == 0
        and s["max_abs_diff"] == 0.0
    )


def table(report: dict[str, Any]) -> str:
    """One row per kill (and per chain end), then the summary."""
    rows = [
        f"{'#':>3} {'chain':>5} {'kind':<6} {'target':>6} {'at_s':>7} {'last_log':>8} {'save':<7} "
        f"{'started_from':>12}"
    ]
    n = 0
    for c_index, chain in enumerate(report["chains"]):
        for k in chain["kills"]:
            n += 1
            rows.append(
                f"{n:>3} {c_index:>5} {k['kind']:<6} {k['target_step']:>6} {k['at_s']:>7.2f} "
                f"{k['last_logged_step']:>8} "
                f"{k['save']:<7} {k['this_run_resumed_from']:>12}"
            )
        f, r = chain["final"], chain["result"]
        rows.append(
            f"  end {c_index:>3}: final run resumed from step {f['resumed_from']}, exit "
            f"{f['returncode']}; train/loss {r['final_loss']!r} (metrics.json "
            f"{r['final_loss_json']!r}) vs {r['ref_final_loss']!r}; "
            f"{r['arrays_differing']}/{r['arrays']} arrays differ, max |diff| {r['max_abs_diff']}"
        )
    s = report["summary"]
    rows.append(
        f"{report['config']}, {report['steps']} steps, seed {report['seed']}, mode "
        f"{report['mode']}: {s['kills']} kills ({s['during_save']} during a save: "
        f"{s['during_save_write']} before the commit, {s['during_save_commit']} before the "
        f"manifest) in {s['chains']} chains ({s['missed_kills']} kill moments missed: the run "
        f"ended first), {report['runs']} runs, {report['wall_s']} s; "
        f"final runs ok {s['final_runs_ok']}/{s['chains']}; unverified resumes "
        f"{s['unverified_resumes']}, damaged-step warnings {s['damaged_warnings']}; "
        f"train/loss equal: {s['loss_equal']}, every logged loss equal: "
        f"{s['logged_losses_equal']}; arrays differing {s['arrays_differing']}, max |diff| "
        f"{s['max_abs_diff']}; exact: {exact(report)}"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="configs/dw4.py:smoke")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--kills_per_chain", type=int, default=5)
    parser.add_argument("--mode", choices=("fork", "spawn"), default="fork")
    parser.add_argument("--root", default="", help="Folder for the runs (default: a temp dir).")
    parser.add_argument("--keep", action="store_true", help="Keep the runs' folders.")
    parser.add_argument("--json", default="", help="Also write the records to this file.")
    a = parser.parse_args(argv)
    if a.num_kills < 1 or a.kills_per_chain < 1 or a.steps < 2:
        parser.error("--num_kills and --kills_per_chain must be >= 1 and --steps >= 2.")
    root = a.root or tempfile.mkdtemp(prefix="kill_resume_")
    os.makedirs(root, exist_ok=True)
    try:
        report = experiment(a.num_kills, a.seed, a.config, a.steps, a.kills_per_chain, root, a.mode)
    finally:
        if not a.keep and not a.root:
            shutil.rmtree(root, ignore_errors=True)
    print(table(report))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if exact(report) else 1


if __name__ == "__main__":
    sys.exit(main())
