"""Atomic file writes: a temporary file next to the destination, then one rename.

An interrupted or failing write never leaves a half-written file and never touches an
existing destination; the finished file gets the permissions of a plain `open` (umask).
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "read_cache_npz", "read_npz", "write_npz_atomic"]


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
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def read_cache_npz(
    path: str | os.PathLike, cache_format: int, keys: tuple[str, ...] = ()
) -> dict[str, np.ndarray] | None:
    """A cache file's arrays, or None (rebuild it) when it is missing, damaged or stale.

    A cache file is an `.npz` holding a `cache_format` entry. It is rejected, with a
    one-line warning naming its path, when it cannot be read (truncated, not a zip, bad
    member), carries another format version, or lacks one of `keys`. The rejected file is
    left in place for the caller to overwrite atomically (`write_npz_atomic`).

    Args:
      path: the cache file.
      cache_format: the format version the reader expects.
      keys: the arrays it must hold.

    Returns:
      The arrays without `cache_format`, or None when the file is absent or rejected.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = read_npz(path)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(
            f"Rebuilding the cache {path}: it cannot be read ({type(err).__name__}: {err}).",
            stacklevel=2,
        )
        return None
    found = int(data.pop("cache_format", -1)) if np.size(data.get("cache_format", 0)) == 1 else -1
    if found != cache_format:
        warnings.warn(
            f"Rebuilding the cache {path}: it has format version {found}, expected {cache_format}.",
            stacklevel=2,
        )
        return None
    missing = [k for k in keys if k not in data]
    if missing:
        warnings.warn(f"Rebuilding the cache {path}: it lacks the arrays {missing}.", stacklevel=2)
        return None
    return data
