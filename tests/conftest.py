"""Test-wide settings: persistent compilation cache, CPU only, fresh keys."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
from experiments.common import runtime  # noqa: E402

runtime.use_single_threaded_eigen()

import jax  # noqa: E402
import pytest  # noqa: E402

runtime.enable_compilation_cache()


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
