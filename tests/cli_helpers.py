"""The command-line tools run as a user runs them: `python -m experiments.<tool>` in a
subprocess from the repository root, on CPU, with matplotlib headless."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment on CPU, headless, the repository first on PYTHONPATH,
    updated with `extra`."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_cli(
    tool: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Runs `python -m experiments.<tool> *args` (environment `cli_env(env)`) to its end.

    Returns:
      The finished process, its stdout and stderr as text.
    """
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{tool}", *args],
        cwd=REPO,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
