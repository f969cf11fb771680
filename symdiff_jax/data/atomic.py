"""Atomic file writes: a temporary file next to the destination, then one rename.

An interrupted or failing write never leaves a half-written file and never touches an
existing destination; the finished file gets the permissions of a plain `open` (umask).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "read_npz", "write_npz_atomic"]


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp"
) -> str:
    """Calls `write(tmp_path)` and renames the temporary file to `path`.

    The temporary file lives next to `path` (same file system, so the rename is atomic)
    and is removed if `write` or the rename fails; an existing `path` is then untouched.

    Args:
      path: the destination (parent folders are created).
      write: writes the whole file to the path it is given.
      suffix: suffix of the temporary file (writers that append one, e.g. `np.savez`,
        need theirs here).

    Returns:
      `path` as a string, user folder expanded.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return str(path)


def write_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> str:
    """Writes `arrays` as an uncompressed `.npz` at `path`, atomically (`atomic_write`)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write, ".npz")


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an `.npz` into memory (no pickles)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
