"""Train / validation / test splits of DW4 and LJ13 from Metropolis chains, cached on disk.

`generate_samples` runs `num_chains` parallel random-walk Metropolis chains (`mcmc.py`) and
keeps, after `burn_in` steps, one state every `thin` steps. The defaults of `SAMPLING` were
chosen from the integrated autocorrelation time tau of the energy trace
(`integrated_autocorrelation_time`, measured with the proposal step of the system, float32):

  DW4, step 0.5:    acceptance 5.4%. Over 1,000 chains and steps 10,000-20,000 (every 10th
                    state), tau = 165 steps for the energy and tau = 760 steps for the
                    fraction of short pairs (d_ij < 4), the slowest observable found (the
                    pair potential is symmetric about d = 4, so the energy hardly sees which
                    well a pair sits in). Both are stationary after ~1,000 steps (energy
                    -22.5 +- 1.9; published data -22.45 +- 1.90). burn_in = 10,000
                    (~13 tau of the short-pair fraction), thin = 1,000 (~1.3 tau).
  LJ13, step 0.025: acceptance 32%, tau = 720 steps for the energy (500 chains, steps
                    10,000-20,000). The mean energy is stationary after ~5,000 steps
                    (-43.0 +- 7.1, as the published data's -43.0 +- 7.1). burn_in = 10,000
                    (~14 tau), thin = 1,500 (~2 tau).

Against the published validation splits (`metrics.particles.reference_metrics`), seed 0:
DW4 val split energy_w2 = 0.0065 (distance_tv 0.039; the published val vs test: 0.0016 and
0.024); LJ13, 10,000 samples from 2,000 chains with the LJ13 burn-in and thinning,
energy_w2 = 0.032 (distance_tv 0.0058; published val vs test: 0.056 and 0.0053). Our DW4
chains put 49% of the pairs in the short well (d < 4), the published data 52%.

Splits are CoM-free `[M, N, d]` float32 arrays, drawn in one pass and assigned to train /
val / test by a seeded permutation, cached as one `.npz` with a format version and the
settings that produced it, written atomically (temporary file, then `os.replace`).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from typing import NamedTuple

import jax
import numpy as np

from symdiff_jax.systems.energies import get_system
from symdiff_jax.systems.mcmc import lattice_start, run_chains

FORMAT_VERSION = 1
SPLIT_SIZES = {"train": 100_000, "val": 10_000, "test": 10_000}


class SamplingSettings(NamedTuple):
    """Metropolis settings: parallel chains, burn-in steps, steps between kept states."""

    num_chains: int
    burn_in: int
    thin: int


SAMPLING = {
    "dw4": SamplingSettings(num_chains=10_000, burn_in=10_000, thin=1_000),
    "lj13": SamplingSettings(num_chains=10_000, burn_in=10_000, thin=1_500),
}


def generate_samples(
    key: jax.Array,
    system: str,
    num_samples: int,
    settings: SamplingSettings | None = None,
) -> np.ndarray:
    """`num_samples` CoM-free Boltzmann samples `[M, N, d]` (float32) of a system.

    Args:
      key: PRNG key (starting lattice sites and chain moves).
      system: "dw4" or "lj13".
      num_samples: M.
      settings: chains, burn-in and thinning; default `SAMPLING[system]` (the chain count
        is lowered to `num_samples` when that is smaller).

    Returns:
      `[M, N, d]` samples ordered chain-fastest (consecutive rows come from different chains).
    """
    spec = get_system(system)
    settings = SAMPLING[system] if settings is None else settings
    num_chains = min(settings.num_chains, num_samples)
    per_chain = math.ceil(num_samples / num_chains)
    key_start, key_burn, key_run = jax.random.split(key, 3)
    x = lattice_start(key_start, num_chains, spec.num_particles, spec.dim, spec.lattice_spacing)
    run = jax.jit(run_chains, static_argnums=(2, 4, 5))
    if settings.burn_in > 0:
        burnt, _, _ = run(key_burn, x, spec.energy, spec.step_size, 1, settings.burn_in)
        x = burnt[-1]
    samples, _, _ = run(key_run, x, spec.energy, spec.step_size, per_chain, settings.thin)
    samples = np.asarray(samples, np.float32).reshape(-1, spec.num_particles, spec.dim)
    return samples[:num_samples]


def generate_splits(
    seed: int,
    system: str,
    sizes: Mapping[str, int] | None = None,
    settings: SamplingSettings | None = None,
) -> dict[str, np.ndarray]:
    """Train / val / test splits drawn from one Metropolis run and a seeded shuffle.

    Args:
      seed: integer seed; the same seed gives the same splits.
      system: "dw4" or "lj13".
      sizes: samples per split; default `SPLIT_SIZES` (100,000 / 10,000 / 10,000).
      settings: Metropolis settings; default `SAMPLING[system]`.

    Returns:
      `{split: [M_split, N, d] float32}`, CoM-free.
    """
    sizes = dict(SPLIT_SIZES if sizes is None else sizes)
    key = jax.random.key(seed)
    pool = generate_samples(key, system, sum(sizes.values()), settings)
    order = np.random.default_rng(seed).permutation(pool.shape[0])
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = pool[order[start : start + size]]
        start += size
    return splits


def save_splits(path: str, splits: Mapping[str, np.ndarray], *, system: str, seed: int) -> None:
    """Writes splits to `path` (`.npz`) atomically, with the format version and provenance."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    settings = SAMPLING.get(system)
    meta = {
        "format_version": np.int64(FORMAT_VERSION),
        "system": np.str_(system),
        "seed": np.int64(seed),
        "sampling": np.asarray(settings if settings is not None else (), np.int64),
    }
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **meta, **{f"split_{k}": np.asarray(v) for k, v in splits.items()})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_splits(path: str, *, system: str | None = None, seed: int | None = None) -> dict:
    """Reads splits written by `save_splits`; checks format version, system and seed.

    Raises:
      ValueError: when the file has another format version, system or seed.
    """
    with np.load(path) as data:
        version = int(data["format_version"])
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path} has particle-split format version {version}, this library reads "
                f"{FORMAT_VERSION}: delete the file to regenerate it."
            )
        for name, want in (("system", system), ("seed", seed)):
            have = data[name].item()
            if want is not None and have != want:
                raise ValueError(
                    f"{path} holds {name}={have!r}, but {name}={want!r} was asked for: "
                    "use another cache path or delete the file."
                )
        return {k[len("split_") :]: data[k] for k in data.files if k.startswith("split_")}


def cached_splits(
    path: str,
    system: str,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    settings: SamplingSettings | None = None,
) -> dict[str, np.ndarray]:
    """The splits of `system` for `seed`: read from `path`, or generated and written there."""
    if os.path.exists(path):
        return load_splits(path, system=system, seed=seed)
    splits = generate_splits(seed, system, sizes, settings)
    save_splits(path, splits, system=system, seed=seed)
    return splits
