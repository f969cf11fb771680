"""Process-wide settings shared by the command-line tools and the tests.

`use_single_threaded_eigen` must run before JAX is imported (it edits `XLA_FLAGS`);
this module imports JAX only inside the functions that need it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def use_single_threaded_eigen() -> None:
    """Adds `--xla_cpu_multi_thread_eigen=false` to `XLA_FLAGS` unless it is set.

    XLA:CPU's multi-threaded Eigen pool can wedge on large vmapped graphs with LAPACK
    calls (a test that never returns from `block_until_ready`); the single-threaded
    pool avoids it at a small cost. Set the flag yourself to override.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def keep_freed_memory() -> bool:
    """Tells glibc's malloc to keep freed memory in the process instead of unmapping it.

    XLA:CPU allocates the scratch buffers of a compiled step (about 1.4 GB for the QM9
    SymDiff train step at batch 64) with `malloc` and frees them after the call. glibc
    serves blocks this large with `mmap` and returns them with `munmap`, so every step
    faults its scratch memory back in page by page, which costs up to ~20% of a step on
    small VMs. This sets `M_MMAP_MAX=0` (large blocks from the heap), a 2 GiB trim
    threshold and one arena: the memory stays mapped and is reused. Peak memory is
    unchanged (the buffers are in use at the peak anyway); up to 2 GiB of idle memory is
    kept until the process exits. Much like running with `MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_ARENA_MAX=1`.

    Returns:
      True if applied (Linux with glibc), False elsewhere (nothing is changed).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_ARENA_MAX, 1))
    return all(mallopt(param, value) == 1 for param, value in settings)


def cache_dir() -> str:
    """`$SYMDIFF_JAX_CACHE`, default `~/.cache/symdiff_jax/jax_cache`."""
    return os.environ.get(
        "SYMDIFF_JAX_CACHE",
        os.path.join(os.path.expanduser("~"), ".cache", "symdiff_jax", "jax_cache"),
    )


def enable_compilation_cache() -> None:
    """Persistent XLA compilation cache: later processes skip most compile time."""
    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir())
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def quiet_library_logs() -> None:
    """Keeps Orbax's per-save INFO lines out of the absl log (warnings still show)."""
    import logging as std_logging

    from absl import logging

    class _DropOrbaxInfo(std_logging.Filter):
        def filter(self, record):
            return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname

    logging.get_absl_handler().addFilter(_DropOrbaxInfo())
