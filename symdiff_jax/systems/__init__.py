"""Many-particle benchmark systems: DW4 and LJ13 energies, Metropolis data, published splits."""

from symdiff_jax.systems.datasets import (
    FORMAT_VERSION,
    SAMPLING,
    SPLIT_SIZES,
    SamplingSettings,
    cached_splits,
    generate_samples,
    generate_splits,
    load_splits,
    save_splits,
)
from symdiff_jax.systems.energies import (
    SYSTEMS,
    ParticleSystem,
    double_well_energy,
    forces,
    get_system,
    lennard_jones_energy,
    pairwise_distances,
)
from symdiff_jax.systems.mcmc import (
    ChainState,
    integrated_autocorrelation_time,
    lattice_start,
    metropolis_step,
    run_chains,
)
from symdiff_jax.systems.reference import REFERENCE_FILES, load_reference_split

__all__ = [
    "FORMAT_VERSION",
    "REFERENCE_FILES",
    "SAMPLING",
    "SPLIT_SIZES",
    "SYSTEMS",
    "ChainState",
    "ParticleSystem",
    "SamplingSettings",
    "cached_splits",
    "double_well_energy",
    "forces",
    "generate_samples",
    "generate_splits",
    "get_system",
    "integrated_autocorrelation_time",
    "lattice_start",
    "lennard_jones_energy",
    "load_reference_split",
    "load_splits",
    "metropolis_step",
    "pairwise_distances",
    "run_chains",
    "save_splits",
]
