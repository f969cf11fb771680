"""An advisory lock on a run's working directory, held for the life of the run.

`workdir_lock(workdir)` takes an exclusive `fcntl.flock` on `<workdir>/run.lock` and
writes the holder's PID and host into it; a second run on the same workdir (another
process, or another `workdir_lock` in the same one) fails at once with
`WorkdirLockedError` naming that PID. The kernel releases the lock when the holder exits
in any way (also `kill -9`), so a crashed run never leaves a stale lock behind. The lock
file stays in place; only the lock on it matters. POSIX only; on a network file system
`flock` may not be honoured across machines.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator

__all__ = ["LOCK_FILE", "WorkdirLockedError", "workdir_lock"]

LOCK_FILE = "run.lock"


class WorkdirLockedError(RuntimeError):
    """Another run holds the lock on the working directory."""


def _holder(fd: int) -> str:
    """The holder's "pid <n> on <host>" as written in the lock file, or a placeholder."""
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "unknown PID (the holder is still starting)"


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[str]:
    """Holds the run lock of `workdir` (created if missing) for the body of a `with`.

    Args:
      workdir: the run's working directory.

    Yields:
      The lock file's path.

    Raises:
      WorkdirLockedError: another run holds the lock (the message names its PID).
    """
    workdir = os.path.abspath(os.fspath(workdir))
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirLockedError(
                f"Workdir {workdir} is in use by another run ({_holder(fd)}, lock file "
                f"{path}); wait for that run to finish, stop it, or pick another workdir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
