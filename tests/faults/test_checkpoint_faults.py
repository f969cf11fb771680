"""Faults a checkpoint directory meets in practice, on tiny states.

Each case damages or interrupts a checkpoint and asserts three things: a clear message
naming what is wrong, nothing earlier lost (the previous steps are intact on disk and
restore bit-exactly), and restore falling back to the newest intact step. The files of a
step are found by listing its directory, so every kind of file Orbax writes (array data,
array and step metadata, metrics) and the manifest are covered whatever their names.
"""

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath

from symdiff_jax.train.checkpoint import Checkpointer, CheckpointError
from symdiff_jax.train.lock import WorkdirLockedError, workdir_lock
from symdiff_jax.train.manifest import MANIFEST_FILE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def state_at(step: int) -> dict:
    """The state saved at `step`: a pure function of the step (floats, ints, a counter)."""
    rng = np.random.default_rng(step)
    return {
        "params": {
            "w": jnp.asarray(rng.standard_normal((32, 16)), jnp.float32),
            "b": jnp.asarray(rng.standard_normal(16), jnp.float32),
        },
        "count": jnp.asarray(rng.integers(0, 1000, 4), jnp.int32),
        "step": jnp.asarray(step, jnp.int32),
    }


def _target() -> dict:
    return jax.eval_shape(lambda: state_at(0))


def _assert_state(restored: dict, step: int) -> None:
    expected = state_at(step)
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        assert np.asarray(a).tobytes() == np.asarray(e).tobytes()


def _files(directory) -> list[str]:
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs)


def _checksums(directory) -> dict[str, str]:
    out = {}
    for path in _files(directory):
        with open(path, "rb") as f:
            out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _flip_bytes(path, count=8):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        start = max(0, size // 2 - count // 2)
        f.seek(start)
        data = f.read(count)
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in data))


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


_DAMAGE = {"flipped bytes": _flip_bytes, "truncated": _truncate, "deleted": os.remove}


@pytest.mark.parametrize("damage", sorted(_DAMAGE))
def test_damage_to_each_file_of_the_newest_step(tmp_path, damage, caplog):
    """Every file of step 2, one at a time: step 2 named, step 1 restored exactly."""
    pristine = tmp_path / "pristine"
    with Checkpointer(pristine, max_to_keep=3) as ckpt:
        for step in (1, 2):
            ckpt.save(step, state_at(step), metrics={"val/nll": 1.0 / step})
    files = [f for f in _files(pristine / "2") if os.path.getsize(f) > 0 or damage == "deleted"]
    assert len(files) >= 4, files  # arrays, their metadata, step metadata, metrics, manifest
    step1 = _checksums(pristine / "1")
    work = tmp_path / "work"
    for path in files:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        relative = os.path.relpath(path, pristine)
        _DAMAGE[damage](work / relative)
        before = _checksums(work)
        caplog.clear()
        with caplog.at_level("WARNING"):
            fresh = Checkpointer(work)
            restored = fresh.restore(_target())
        if damage == "deleted" and os.path.basename(path) == MANIFEST_FILE:
            # Without its manifest the (complete) step is restored, unverified, with a warning.
            _assert_state(restored, 2)
            assert "no content manifest" in caplog.text and str(work / "2") in caplog.text
            continue
        _assert_state(restored, 1)
        assert str(work / "2") in caplog.text, (relative, caplog.text)
        if 2 in fresh.all_steps():
            with pytest.raises(CheckpointError, match=r"step 2\) is damaged") as info:
                fresh.restore(_target(), step=2)
            assert str(work / "2") in str(info.value) and "restore(step=1)" in str(info.value)
        assert _checksums(work) == before, relative  # reading changed nothing
        assert _checksums(work / "1") == step1
        assert fresh.save(2, state_at(2)) is False  # the damaged step is never overwritten
        assert _checksums(work) == before


def test_damage_to_every_step_is_a_clear_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        for step in (1, 2):
            ckpt.save(step, state_at(step))
    for step in (1, 2):
        _flip_bytes(max(_files(tmp_path / str(step)), key=os.path.getsize))
    with pytest.raises(CheckpointError, match=r"Every checkpoint .* is damaged"):
        Checkpointer(tmp_path).restore(_target())


def test_disk_full_while_writing_metadata(tmp_path, monkeypatch):
    """ENOSPC from the writer of the checkpoint's JSON files, in the middle of a save."""
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state_at(1), metrics={"val/nll": 1.0})
    before = _checksums(tmp_path)
    path_type = type(epath.Path(str(tmp_path)))
    real_write_text = path_type.write_text
    calls = []

    def full_disk(self, *args, **kwargs):
        calls.append(str(self))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(path_type, "write_text", full_disk)
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        ckpt.save(2, state_at(2), metrics={"val/nll": 0.5})
    assert calls, "the patched writer was never reached"
    message = str(info.value)
    assert "step 2" in message and str(tmp_path) in message and "untouched" in message
    monkeypatch.setattr(path_type, "write_text", real_write_text)
    ckpt.close()
    assert {k: v for k, v in _checksums(tmp_path).items() if k.startswith("1/")} == before
    with Checkpointer(tmp_path) as again:  # space freed: the run resumes and saves again
        _assert_state(again.restore(_target()), 1)
        assert again.save(2, state_at(2))
        _assert_state(again.restore(_target()), 2)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs permission to mount; skipped otherwise)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + result.stderr.decode().strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_on_a_small_tmpfs(small_tmpfs):
    """Saves until the file system is full: a clear error, every earlier step restorable."""
    directory = small_tmpfs / "ckpt"
    saved = []
    ckpt = Checkpointer(directory, max_to_keep=1000, best_metric=None)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        for step in range(1, 1000):
            ckpt.save(step, state_at(step))
            saved.append(step)
    assert saved and f"step {saved[-1] + 1}" in str(info.value)
    fresh = Checkpointer(directory)
    assert fresh.all_steps()[: len(saved)] == saved
    for step in saved:
        _assert_state(fresh.restore(_target(), step=step), step)


_SAVER = textwrap.dedent(
    """
    import importlib.util, sys
    from symdiff_jax.train.checkpoint import Checkpointer
    from symdiff_jax.train.lock import workdir_lock

    # The states of this test file, so that parent and child save the same values.
    spec = importlib.util.spec_from_file_location("faults", sys.argv[2])
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    state = faults.state_at

    workdir = sys.argv[1]
    with workdir_lock(workdir), Checkpointer(workdir + "/ckpt", max_to_keep=2) as ckpt:
        start = ckpt.latest_step() or 0
        print("READY", flush=True)
        for step in range(start + 1, 100000):
            ckpt.save(step, state(step), metrics={"val/nll": float(step % 7)})
            print(step, flush=True)
    """
)


def _start_saver(workdir):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(workdir), os.path.abspath(__file__)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


def _kill_while_saving(workdir, delay_s: float) -> int:
    """Starts the saver, kills it with SIGKILL `delay_s` after its first save; returns the
    last step it reported saved."""
    proc = _start_saver(workdir)
    assert proc.stdout.readline().strip() == "READY"
    with pytest.raises(WorkdirLockedError, match=f"pid {proc.pid} on"):
        with workdir_lock(workdir):
            pass
    first = int(proc.stdout.readline())
    time.sleep(delay_s)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return max([first] + [int(line) for line in out.split() if line.isdigit()])


def _check_after_kill(workdir, last_reported: int) -> int:
    """The newest intact step is at least the last reported one and restores exactly."""
    with workdir_lock(workdir):  # the kernel released the dead saver's lock
        ckpt = Checkpointer(workdir / "ckpt")
        restored = ckpt.restore(_target())
        step = int(restored["step"])
        assert step >= last_reported, (step, last_reported)
        _assert_state(restored, step)
        return step


def test_kill_9_while_saving(tmp_path):
    """One kill at a random moment (fixed seed), a restore, and saving resumed after it."""
    delay = float(np.random.default_rng(0).uniform(0.0, 1.0))
    step = _check_after_kill(tmp_path, _kill_while_saving(tmp_path, delay))
    with Checkpointer(tmp_path / "ckpt", max_to_keep=2) as ckpt:
        assert ckpt.save(step + 1, state_at(step + 1))
        _assert_state(ckpt.restore(_target()), step + 1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 6))
def test_kill_9_while_saving_at_random_moments(tmp_path, seed):
    """Five kills per seed at random moments, each followed by a restore."""
    rng = np.random.default_rng(seed)
    step = 0
    for delay in rng.uniform(0.0, 1.0, size=5):
        newest = _check_after_kill(tmp_path, _kill_while_saving(tmp_path, float(delay)))
        assert newest >= step
        step = newest
