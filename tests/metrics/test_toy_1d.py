"""Tests of symdiff_jax.metrics.toy_1d against independent numpy / scipy computations."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from symdiff_jax.metrics.toy_1d import (
    mean_abs_to_nearest,
    positive_branch_error,
    w2_to_atoms,
    w2_to_reflection_orbit,
)


def _w2_linprog(x, atoms, weights):
    """W2 by solving the discrete optimal-transport linear program (no quantile argument)."""
    x, atoms, weights = (np.asarray(a, np.float64) for a in (x, atoms, weights))
    n, k = len(x), len(atoms)
    cost = ((x[:, None] - atoms[None, :]) ** 2).ravel()
    a_eq = np.zeros((n + k, n * k))
    for i in range(n):
        a_eq[i, i * k : (i + 1) * k] = 1.0
    for j in range(k):
        a_eq[n + j, j::k] = 1.0
    b_eq = np.concatenate([np.full(n, 1.0 / n), weights / weights.sum()])
    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    assert res.success
    return np.sqrt(res.fun)


def _w2_quantile_grid(x, atoms, weights, num=700_000):
    """W2 as the midpoint rule of int_0^1 (F^-1(u) - G^-1(u))^2 du on a fine u-grid."""
    x = np.sort(np.asarray(x, np.float64))
    order = np.argsort(atoms)
    atoms = np.asarray(atoms, np.float64)[order]
    weights = np.asarray(weights, np.float64)[order]
    cum = np.cumsum(weights / weights.sum())
    u = (np.arange(num) + 0.5) / num
    f_inv = x[np.minimum(np.ceil(u * len(x)).astype(int) - 1, len(x) - 1)]
    g_inv = atoms[np.minimum(np.searchsorted(cum, u), len(atoms) - 1)]
    return np.sqrt(np.mean((f_inv - g_inv) ** 2))


@pytest.mark.parametrize(
    "n, atoms, weights",
    [
        (8, (-1.0, 1.0), (0.5, 0.5)),
        (7, (-1.0, 1.0), (0.5, 0.5)),  # odd n: the middle sample is split
        (10, (1.0, -1.0), (0.7, 0.3)),  # unsorted atoms, unequal weights
        (5, (-2.0, 0.5, 3.0), (0.2, 0.5, 0.3)),
        (6, (-1.0, 2.0), (1.0, 3.0)),  # unnormalised weights are normalised
    ],
)
def test_w2_against_linear_program(n, atoms, weights):
    """Exact W2 agrees with the optimal-transport LP solved by scipy (HiGHS)."""
    rng = np.random.default_rng(n)
    x = rng.normal(size=n) * 1.5
    got = float(w2_to_atoms(jnp.asarray(x), atoms, weights))
    np.testing.assert_allclose(got, _w2_linprog(x, atoms, weights), rtol=1e-5)


@pytest.mark.parametrize("n", [1000, 1001])
def test_w2_against_quantile_integral(n):
    """Exact W2 agrees with a fine-grid quantile integral (grid aligned with all breakpoints)."""
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [1 + 0.01 * rng.normal(size=n // 2), -1 + 0.01 * rng.normal(size=n - n // 2)]
    )
    x[:3] = 0.0  # a few samples stuck between the atoms
    num = n * 700
    got = float(w2_to_atoms(jnp.asarray(x, jnp.float32), (-1.0, 1.0)))
    np.testing.assert_allclose(got, _w2_quantile_grid(x, (-1.0, 1.0), (0.5, 0.5), num), rtol=1e-4)


def test_w2_reference_formula_even_n():
    """For even n and the balanced orbit: sqrt(mean((sort(x) - [-1]*n/2 + [1]*n/2)^2))."""
    rng = np.random.default_rng(1)
    x = np.sign(rng.normal(size=2000)) + 1e-3 * rng.normal(size=2000)
    target = np.concatenate([-np.ones(1000), np.ones(1000)])
    ref = np.sqrt(np.mean((np.sort(x) - target) ** 2))
    np.testing.assert_allclose(float(w2_to_reflection_orbit(jnp.asarray(x))), ref, rtol=1e-5)


def test_w2_closed_forms():
    """W2 = 0 on the target itself; all mass at 0 gives W2 = 1; an imbalance costs mass."""
    assert float(w2_to_reflection_orbit(jnp.array([-1.0, 1.0, -1.0, 1.0]))) == 0.0
    np.testing.assert_allclose(float(w2_to_reflection_orbit(jnp.zeros(10))), 1.0, rtol=1e-6)
    # 3/4 of the samples at +1, 1/4 at -1: a quarter of the mass moves by 2 -> W2 = 2 * 1/2.
    x = jnp.array([-1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(float(w2_to_reflection_orbit(x)), 1.0, rtol=1e-6)
    # [n, 1] input is accepted.
    np.testing.assert_allclose(float(w2_to_reflection_orbit(x[:, None])), 1.0, rtol=1e-6)


def test_w2_is_not_w1():
    """The reflection-orbit W2 differs from W1 (scipy's wasserstein_distance) when it should."""
    from scipy.stats import wasserstein_distance

    x = np.array([-1.0, -1.0, 0.0, 1.0])  # one sample at 0 -> cost 1 on 1/4 mass
    w1 = wasserstein_distance(x, [-1.0, 1.0])
    np.testing.assert_allclose(w1, 0.25)
    np.testing.assert_allclose(float(w2_to_reflection_orbit(jnp.asarray(x))), 0.5, rtol=1e-6)


def test_mean_abs_to_nearest_against_numpy():
    """mean |x - sign(x)| for the reflection orbit, and min-distance for a general set."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=501) * 2
    np.testing.assert_allclose(
        float(mean_abs_to_nearest(jnp.asarray(x))), np.mean(np.abs(x - np.sign(x))), rtol=1e-5
    )
    pts = np.array([-3.0, 0.2, 4.0])
    ref = np.mean([min(abs(v - p) for p in pts) for v in x])
    np.testing.assert_allclose(float(mean_abs_to_nearest(jnp.asarray(x), pts)), ref, rtol=1e-5)


@pytest.mark.allow_nonfinite
def test_positive_branch_error():
    """mean |x - 1| over x > 0 only (reference validation); +inf when nothing is positive."""
    x = jnp.array([1.1, 0.9, -1.0, -0.5, 0.0, 2.0])
    np.testing.assert_allclose(float(positive_branch_error(x)), (0.1 + 0.1 + 1.0) / 3, rtol=1e-6)
    assert float(positive_branch_error(jnp.array([-1.0, 0.0]))) == np.inf


def test_errors_speak():
    with pytest.raises(ValueError, match="1D array"):
        w2_to_atoms(jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="one entry per atom"):
        w2_to_atoms(jnp.zeros(3), (-1.0, 1.0), (1.0,))
