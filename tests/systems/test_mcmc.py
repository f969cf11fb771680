"""The Metropolis kernel leaves a known density invariant; autocorrelation estimator."""

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.groups import com_free_normal
from symdiff_jax.systems import integrated_autocorrelation_time, lattice_start, run_chains
from symdiff_jax.testing import energy_test

SIGMA = 0.7


def gaussian_energy(x):
    """exp(-E) restricted to U is N_U(0, SIGMA^2 I)."""
    return 0.5 * jnp.sum(x * x, axis=(-2, -1)) / SIGMA**2


def test_metropolis_keeps_gaussian_invariant(key):
    # Start 2,000 chains at exact draws of N_U(0, SIGMA^2), run 30 steps, and compare the
    # squared radii with fresh exact draws: exact permutation two-sample test (energy
    # distance), false-alarm rate 1e-3.
    k_start, k_run, k_ref = jax.random.split(key, 3)
    shape = (2000, 5, 3)
    start = SIGMA * com_free_normal(k_start, shape)
    samples, _, acc = jax.jit(run_chains, static_argnums=(2, 4, 5))(
        k_run, start, gaussian_energy, 0.3, 1, 30
    )
    assert 0.05 < float(acc) < 0.95
    exact = SIGMA * com_free_normal(k_ref, shape)

    def stats(x):
        x = np.asarray(x, np.float64)
        return np.stack([np.sum(x**2, axis=(-2, -1)), x[:, 0, 0], x.sum(axis=(-2, -1))], -1)

    result = energy_test(stats(samples[-1]), stats(exact), num_permutations=2000)
    assert result.pvalue > 1e-3, result
    np.testing.assert_allclose(np.asarray(samples[-1]).sum(axis=1), 0.0, atol=1e-4)


def test_autocorrelation_time_of_ar1():
    # AR(1) x_t = phi x_{t-1} + e_t has tau = (1 + phi) / (1 - phi) = 9 for phi = 0.8.
    rng = np.random.default_rng(0)
    phi, steps, chains = 0.8, 20_000, 8
    x = np.zeros((steps, chains))
    noise = rng.normal(size=(steps, chains))
    for t in range(1, steps):
        x[t] = phi * x[t - 1] + noise[t]
    assert abs(integrated_autocorrelation_time(x) - 9.0) < 0.9


def test_lattice_start_is_com_free_and_apart(key):
    x = np.asarray(lattice_start(key, 50, 13, 3, 1.0))
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-5)
    d = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1) + 10 * np.eye(13)
    assert d.min() > 1.0 - 1e-5
