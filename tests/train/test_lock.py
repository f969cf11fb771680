"""workdir_lock: one run per workdir, the holder's PID in the message, no stale locks."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from symdiff_jax.train import lock as lock_module
from symdiff_jax.train.lock import LOCK_FILE, WorkdirLockedError, workdir_lock

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_HOLDER = textwrap.dedent(
    """
    import importlib.util, sys
    # The module alone, by path: the package's JAX import would slow the test down.
    spec = importlib.util.spec_from_file_location("lock", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with module.workdir_lock(sys.argv[1]):
        print("LOCKED", flush=True)
        sys.stdin.readline()
    print("RELEASED", flush=True)
    """
)


def _start_holder(workdir):
    path = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(workdir), lock_module.__file__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    assert proc.stdout.readline().strip() == "LOCKED"
    return proc


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(WorkdirLockedError) as info:
            with workdir_lock(tmp_path):
                pytest.fail("the body must not run while another process holds the lock")
        message = str(info.value)
        assert f"pid {holder.pid} on" in message and str(tmp_path) in message
        assert "\n" not in message
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    with workdir_lock(tmp_path) as path:  # released on a normal exit
        assert path == str(tmp_path / LOCK_FILE)
        assert open(path).read().startswith(f"pid {os.getpid()} on")


def test_kill_9_releases_the_lock(tmp_path):
    holder = _start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with workdir_lock(tmp_path):
        pass


def test_same_process_cannot_lock_twice(tmp_path):
    with workdir_lock(tmp_path):
        with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()} on"):
            with workdir_lock(tmp_path):
                pass
    with workdir_lock(tmp_path / "new" / "run"):  # a missing workdir is created
        assert (tmp_path / "new" / "run" / LOCK_FILE).exists()
