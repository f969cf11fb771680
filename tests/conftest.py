"""Test-wide settings: persistent compilation cache, CPU only, fresh keys, and
`jax_debug_nans` / `jax_debug_infs` on for every test not marked `allow_nonfinite`."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
from experiments.common import runtime  # noqa: E402

runtime.use_single_threaded_eigen()

import jax  # noqa: E402
import pytest  # noqa: E402

runtime.enable_compilation_cache()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "allow_nonfinite: the test computes NaN or inf on purpose, so jax_debug_nans and "
        "jax_debug_infs stay off for it",
    )


@pytest.fixture(autouse=True)
def _fail_on_nonfinite(request):
    """Every JAX computation of a test raises FloatingPointError at its first NaN or inf,
    unless the test is marked `allow_nonfinite`."""
    if request.node.get_closest_marker("allow_nonfinite"):
        yield
        return
    with jax.debug_nans(True), jax.debug_infs(True):
        yield


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
