"""Sample-quality metrics of the many-particle benchmarks (DW4, LJ13).

Defined as the energy-based-sampler literature computes them: Akhound-Sadegh et al. (2024),
"Iterated denoising energy matching" (DEM), section 5 ("energy W2": POT's `emd2_1d` between
the 1-D energy samples, i.e. the squared 2-Wasserstein distance), and the interatomic-distance
histograms of Klein et al. (2023), "Equivariant flow matching", and Midgley et al. (2023),
"SE(3) equivariant augmented coupling flows" (total variation between normalised 200-bin
histograms of all pair distances).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import ot

from symdiff_jax.systems.energies import get_system, pairwise_distances
from symdiff_jax.systems.reference import load_reference_split

NUM_BINS = 200


def energy_w2(energies: np.ndarray, reference_energies: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between two 1-D energy samples.

    `ot.emd2_1d(a, b)` with uniform weights and the squared Euclidean ground cost, which is
    W2^2, not W2: the number DEM (Akhound-Sadegh et al. 2024, Table 2) reports as
    "E-W2". Non-finite energies are kept (they make the distance infinite or NaN).
    """
    a = np.asarray(energies, np.float64).reshape(-1)
    b = np.asarray(reference_energies, np.float64).reshape(-1)
    return float(ot.emd2_1d(a, b))


def high_energy_fraction(energies: np.ndarray, reference_energies: np.ndarray) -> float:
    """Fraction of samples whose energy is above the highest reference energy (or not finite).

    A diagnostic of ours, not a literature metric: `energy_w2` squares energy differences,
    so on Lennard-Jones systems (U ~ d^-12) a few samples with two particles too close can
    carry almost all of it. This fraction says how many there are.
    """
    a = np.asarray(energies, np.float64).reshape(-1)
    b = np.asarray(reference_energies, np.float64).reshape(-1)
    return float(np.mean(~(np.isfinite(a) & (a <= b.max()))))


def distance_histograms(
    samples: np.ndarray, reference: np.ndarray, num_bins: int = NUM_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised histograms of all pair distances of two sample sets on shared bins.

    The bins split `[min, max]` of the pooled distances into `num_bins` equal widths.

    Returns:
      `(p [num_bins], q [num_bins], centres [num_bins])`, p and q summing to 1.
    """
    d_s = np.asarray(pairwise_distances(np.asarray(samples, np.float64))).reshape(-1)
    d_r = np.asarray(pairwise_distances(np.asarray(reference, np.float64))).reshape(-1)
    pooled = np.concatenate([d_s, d_r])
    edges = np.linspace(pooled.min(), pooled.max(), num_bins + 1)
    p = np.histogram(d_s, bins=edges)[0].astype(np.float64)
    q = np.histogram(d_r, bins=edges)[0].astype(np.float64)
    return p / p.sum(), q / q.sum(), 0.5 * (edges[1:] + edges[:-1])


def distance_tv(samples: np.ndarray, reference: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Total variation `1/2 sum_b |p_b - q_b|` of the interatomic-distance histograms.

    200 bins (Midgley et al. 2023; Klein et al. 2023), in [0, 1].
    """
    p, q, _ = distance_histograms(samples, reference, num_bins)
    return float(0.5 * np.abs(p - q).sum())


def distance_w2(samples: np.ndarray, reference: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Squared 2-Wasserstein distance between the interatomic-distance histograms.

    `ot.emd2_1d` on the histograms' bin centres with the histograms as weights (squared
    cost, so W2^2, like `energy_w2`); DEM (Akhound-Sadegh et al. 2024) reports the W2 of
    interatomic-distance distributions beside the energy W2.
    """
    p, q, centres = distance_histograms(samples, reference, num_bins)
    return float(ot.emd2_1d(centres, centres, p, q))


def particle_metrics(
    samples: np.ndarray,
    reference: np.ndarray,
    energy: Callable[[np.ndarray], np.ndarray],
) -> dict[str, float]:
    """`energy_w2`, `distance_w2`, `distance_tv` and `high_energy_frac` of samples
    `[M, N, d]` against a reference.

    Args:
      samples: generated samples `[M, N, d]` (data units).
      reference: reference samples `[M', N, d]` (e.g. `load_reference_split(..., "val")`).
      energy: the system's energy, `energy(x [M, N, d]) -> [M]`.

    Returns:
      `{"energy_w2", "distance_w2", "distance_tv", "high_energy_frac"}` as floats.
    """
    e_s = np.asarray(energy(np.asarray(samples, np.float64)))
    e_r = np.asarray(energy(np.asarray(reference, np.float64)))
    return {
        "energy_w2": energy_w2(e_s, e_r),
        "distance_w2": distance_w2(samples, reference),
        "distance_tv": distance_tv(samples, reference),
        "high_energy_frac": high_energy_fraction(e_s, e_r),
    }


def reference_metrics(
    samples: np.ndarray, directory: str, system: str, split: str = "val"
) -> dict[str, float]:
    """`particle_metrics` of samples against a published split read from `directory`.

    Args:
      samples: `[M, N, d]` samples of the system (e.g. generated, or Metropolis data).
      directory: folder with the published `.npy` splits (`load_reference_split`).
      system: "dw4" or "lj13".
      split: "val" to check data and select models; "test" for final numbers only.

    Returns:
      `particle_metrics`' dictionary.
    """
    reference = load_reference_split(directory, system, split)
    return particle_metrics(samples, reference, get_system(system).energy)
