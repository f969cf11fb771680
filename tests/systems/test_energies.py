"""DW4 / LJ13 energies against hand-computed values; forces against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.systems import (
    double_well_energy,
    forces,
    get_system,
    lattice_start,
    lennard_jones_energy,
    pairwise_distances,
)
from symdiff_jax.testing import assert_equivariant


def test_pairwise_distances_order():
    x = jnp.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(pairwise_distances(x), [3.0, 4.0, 5.0], rtol=1e-6)


def test_double_well_hand_computed():
    # Points 0, 3, 5, 6 on a line: pair distances 3, 5, 6, 2, 3, 1.
    # f(d) = 0.9 (d - 4)^4 - 4 (d - 4)^2: f(3) = f(5) = -3.1, f(6) = f(2) = -1.6,
    # f(1) = 72.9 - 36 = 36.9; total 3 (-3.1) + 2 (-1.6) + 36.9 = 24.4.
    x = jnp.array([[0.0, 0.0], [3.0, 0.0], [5.0, 0.0], [6.0, 0.0]])
    np.testing.assert_allclose(double_well_energy(x), 24.4, rtol=1e-6)


def test_lennard_jones_hand_computed():
    # Two particles at distance 1: each ordered pair gives 1 - 2 = -1, so -2; the
    # oscillator 1/2 (0.5^2 + 0.5^2) = 0.25.
    two = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(lennard_jones_energy(two), -1.75, rtol=1e-6)
    # Three on a line at 0, 1, 2: pairs 1, 1, 2; lj(2) = 2^-12 - 2^-5; twice the sum;
    # oscillator 1/2 (1 + 0 + 1) = 1.
    three = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    expected = 2.0 * (-1.0 - 1.0 + 2.0**-12 - 2.0**-5) + 1.0
    np.testing.assert_allclose(lennard_jones_energy(three), expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_forces_match_finite_differences(name, key, x64):
    spec = get_system(name)
    x = lattice_start(key, 1, spec.num_particles, spec.dim, spec.lattice_spacing)[0]
    x = x + 0.05 * spec.lattice_spacing * jax.random.normal(jax.random.fold_in(key, 1), x.shape)
    f = forces(spec.energy, x)
    h = 1e-6
    steps = h * jnp.eye(x.size, dtype=x.dtype).reshape((x.size,) + x.shape)
    energy = jax.jit(spec.energy)
    numeric = -(energy(x + steps) - energy(x - steps)).reshape(x.shape) / (2 * h)
    np.testing.assert_allclose(f, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_energies_invariant(name, key):
    spec = get_system(name)
    x = lattice_start(key, 1, spec.num_particles, spec.dim, spec.lattice_spacing)[0]
    group = {2: "O2", 3: "O3"}[spec.dim]
    assert_equivariant(spec.energy, key, x, group=group, invariant=True, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(spec.energy(x + 3.0), spec.energy(x), rtol=1e-5)


def test_unknown_system():
    with pytest.raises(ValueError, match="lj13"):
        get_system("lj55")
