"""Scores of particle samples: energy / distance metrics, exact NLL, histogram pictures."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx

from symdiff_jax.flow_matching import exact_log_likelihood
from symdiff_jax.metrics.particles import distance_histograms, particle_metrics
from symdiff_jax.systems import get_system


def sample_metrics(samples: np.ndarray, reference: np.ndarray, system: str) -> dict[str, float]:
    """`energy_w2` (squared W2 of the energies), `distance_w2`, `distance_tv` (200 bins)."""
    return particle_metrics(samples, reference, get_system(system).energy)


def flow_nll(config, graphdef, params, data: np.ndarray) -> float:
    """Mean NLL (nats, data units) of `data [M, N, d]` under the deterministic flow.

    `exact_log_likelihood` (exact divergence on the CoM-free subspace, RK4 with
    `evaluate.nll_steps` steps) on the scaled data, plus `(N - 1) d log(scale)` for the
    change of units.
    """
    model = nnx.merge(graphdef, params)
    steps = config.evaluate.nll_steps
    log_lik = jax.jit(jax.vmap(lambda x: exact_log_likelihood(model, x, steps)))
    scale = config.data.scale
    values = [np.asarray(log_lik(b / scale)) for b in np.array_split(data, -(-len(data) // 250))]
    n, d = data.shape[-2:]
    return float(-np.concatenate(values).mean() + (n - 1) * d * math.log(scale))


def write_histograms(path: str, samples: np.ndarray, reference: np.ndarray, system: str) -> None:
    """A PNG with the energy histogram and the interatomic-distance histogram against data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energy = get_system(system).energy
    e_s = np.asarray(energy(samples))
    e_r = np.asarray(energy(reference))
    lo, hi = np.percentile(e_r, [0.1, 99.9])
    hi = hi + 0.5 * (hi - lo)
    fig, (ax_e, ax_d) = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.linspace(lo, hi, 100)
    ax_e.hist(e_r, bins, density=True, alpha=0.5, label="data")
    ax_e.hist(np.clip(e_s, lo, hi), bins, density=True, alpha=0.5, label="samples")
    ax_e.set_xlabel("energy (kT)")
    ax_e.legend()
    p, q, centres = distance_histograms(samples, reference)
    ax_d.plot(centres, q, label="data")
    ax_d.plot(centres, p, label="samples")
    ax_d.set_xlabel("interatomic distance")
    ax_d.legend()
    fig.suptitle(system)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
