"""Process-wide settings shared by the command-line tools and the tests.

`use_single_threaded_eigen` must run before JAX is imported (it edits `XLA_FLAGS`);
this module imports JAX only inside the functions that need it.
"""

from __future__ import annotations

import os


def use_single_threaded_eigen() -> None:
    """Adds `--xla_cpu_multi_thread_eigen=false` to `XLA_FLAGS` unless it is set.

    XLA:CPU's multi-threaded Eigen pool can wedge on large vmapped graphs with LAPACK
    calls (a test that never returns from `block_until_ready`); the single-threaded
    pool avoids it at a small cost. Set the flag yourself to override.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


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
