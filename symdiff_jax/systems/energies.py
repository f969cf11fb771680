"""Energies and forces of the many-particle benchmark systems DW4 and LJ13 (kT = 1).

Both potentials are invariant under rotations, reflections, translations and atom
permutations, so their Boltzmann densities `exp(-E(x))` are S_N x O(d)-invariant on the
centre-of-mass-free subspace.

References:
  Kohler, Klein, Noe (2020), "Equivariant flows: exact likelihood generative learning for
  symmetric densities", section 6 (DW4 and LJ13).
  Klein, Kraemer, Noe (2023), "Equivariant flow matching", section 5 (the published LJ13 data,
  with the harmonic oscillator term and each pair counted twice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from symdiff_jax.validation import check_points


def pairwise_distances(x: jax.Array) -> jax.Array:
    """Distances `d_ij` of the pairs i < j: `[..., N, d] -> [..., N (N - 1) / 2]`.

    Pairs are ordered as `numpy.triu_indices(N, k=1)`.
    """
    check_points(x)
    n = x.shape[-2]
    i, j = jnp.triu_indices(n, k=1)
    diff = x[..., i, :] - x[..., j, :]
    return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def double_well_energy(x: jax.Array, a: float = 0.9, b: float = -4.0, d0: float = 4.0) -> jax.Array:
    """DW4 energy `E(x) = sum_{i<j} [a (d_ij - d0)^4 + b (d_ij - d0)^2]`, `[..., N, d] -> [...]`.

    Kohler et al. (2020), eq. 19 with a = 0.9, b = -4, c = 0, d0 = 4 (DW4: N = 4, d = 2).
    No harmonic term: the energy is translation-invariant.
    """
    r = pairwise_distances(x) - d0
    return jnp.sum(a * r**4 + b * r**2, axis=-1)


def lennard_jones_energy(
    x: jax.Array, epsilon: float = 1.0, r_m: float = 1.0, oscillator: float = 1.0
) -> jax.Array:
    """LJ energy with a centring oscillator, `[..., N, d] -> [...]`.

    `U(x) = eps sum_{i != j} [(r_m / d_ij)^12 - 2 (r_m / d_ij)^6]
           + (c / 2) sum_i |x_i - mean(x)|^2`,
    each unordered pair counted twice, eps = r_m = c = 1 for LJ13 as the published
    equivariant-flow-matching data define it (Klein et al. 2023; Kohler et al. 2020, eq. 20
    with the oscillator of their section 6).
    """
    inv6 = (r_m / pairwise_distances(x)) ** 6
    pair = 2.0 * epsilon * jnp.sum(inv6 * inv6 - 2.0 * inv6, axis=-1)
    centred = x - jnp.mean(x, axis=-2, keepdims=True)
    return pair + 0.5 * oscillator * jnp.sum(centred * centred, axis=(-2, -1))


def forces(energy: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Forces `-grad_x E(x)`, `[..., N, d] -> [..., N, d]` for any batch shape."""
    return -jax.grad(lambda y: jnp.sum(energy(y)))(x)


class ParticleSystem(NamedTuple):
    """A benchmark system: its energy (kT = 1), size and Metropolis settings.

    Attributes:
      name: "dw4" or "lj13".
      num_particles: N.
      dim: spatial dimension d.
      energy: `energy(x [..., N, d]) -> [...]`.
      step_size: standard deviation of the Metropolis proposal per coordinate
        (0.5 for DW4, 0.025 for LJ13, the values of the published data's samplers).
      lattice_spacing: spacing of the lattice the chains start from (about the pair
        distance of lowest energy, so no start overlaps).
    """

    name: str
    num_particles: int
    dim: int
    energy: Callable[[jax.Array], jax.Array]
    step_size: float
    lattice_spacing: float


SYSTEMS = {
    "dw4": ParticleSystem("dw4", 4, 2, double_well_energy, 0.5, 4.0),
    "lj13": ParticleSystem("lj13", 13, 3, lennard_jones_energy, 0.025, 1.0),
}


def get_system(name: str) -> ParticleSystem:
    """The `ParticleSystem` called `name` ("dw4" or "lj13")."""
    if name not in SYSTEMS:
        raise ValueError(f"Unknown particle system {name!r}; expected one of {sorted(SYSTEMS)}.")
    return SYSTEMS[name]
