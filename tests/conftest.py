"""Test-wide settings: persistent compilation cache, CPU only, fresh keys."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# XLA:CPU's multi-threaded Eigen pool can wedge on large vmapped graphs with LAPACK
# calls (seen here as a test that never returns from block_until_ready); the
# single-threaded pool avoids it at a small cost on 2 cores.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

_CACHE = os.environ.get(
    "SYMDIFF_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "symdiff_jax", "jax_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def key(request):
    """A fresh PRNG key per test, derived from the test's name (reproducible)."""
    import zlib

    return jax.random.key(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def x64():
    """Runs a test body in float64; restores the previous setting afterwards."""
    with jax.enable_x64(True):
        yield
