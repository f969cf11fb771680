"""Scores of particle samples: energy / distance metrics, exact NLL, histogram pictures;
restoring a trained particle run and scoring it again (`python -m experiments.evaluate`)."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from flax import nnx

from experiments.common.restore import RestoredRun, restore_run
from experiments.particles.input_pipeline import evaluation_reference, load_splits
from experiments.particles.model import abstract_state
from experiments.particles.sampling import generate
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


def has_nll(config) -> bool:
    """Whether the run's generator is a deterministic flow with an exact NLL (the EGNN flow)."""
    return config.model.kind == "egnn" and config.generator == "flow"


def sample_and_score(
    config,
    graphdef,
    params,
    key: jax.Array,
    reference: np.ndarray,
    *,
    num_samples: int,
    nll_samples: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """`(samples [num_samples, N, d], metrics)` of a trained model against `reference`.

    The metrics: `sample_s_per_1000`, `nonfinite_samples`, `sample_metrics` of the finite
    samples and, for deterministic flows with `nll_samples > 0`, `nll` on the first
    `nll_samples` reference samples.
    """
    samples, s_per_1000 = generate(config, graphdef, params, key, num_samples)
    finite = np.isfinite(samples).all(axis=(1, 2))
    metrics: dict[str, Any] = {
        "sample_s_per_1000": s_per_1000,
        "nonfinite_samples": int((~finite).sum()),
    }
    metrics.update(sample_metrics(samples[finite], reference, config.system))
    if has_nll(config) and nll_samples > 0:
        metrics["nll"] = flow_nll(config, graphdef, params, reference[:nll_samples])
    return samples, metrics


def _train_command(workdir: str, config) -> str:
    if config is None:
        return f"python -m experiments.train --config configs/dw4.py --workdir {workdir}"
    system, variant = config.system, config.get("variant", config.system)
    name = variant[len(system) + 1 :] if variant.startswith(system + "_") else ""
    return (
        f"python -m experiments.train --config configs/{system}.py"
        + (f":{name}" if name else "")
        + f" --workdir {workdir}"
    )


def load_particle_run(workdir: str, checkpoint: str | int = "latest") -> RestoredRun:
    """Restores the EMA parameters of a particle training workdir (DW4, LJ13).

    Raises:
      FileNotFoundError (`WorkdirError`): the workdir, its config.json or its checkpoints
        are missing, or it is not a particle run.
      ValueError: a malformed `checkpoint`.
      symdiff_jax.train.CheckpointError: a damaged or unknown checkpoint (nothing written).
    """
    return restore_run(
        workdir,
        checkpoint,
        experiments=("particles",),
        abstract_state=abstract_state,
        train_command=_train_command,
    )


def sampling_config(config, *, num_steps: int | None = None, batch_size: int | None = None):
    """A copy of a run's config with `sample.num_steps` / `sample.batch_size` replaced where given."""
    config = config.copy_and_resolve_references()
    if num_steps is not None:
        config.sample.num_steps = num_steps
    if batch_size is not None:
        config.sample.batch_size = batch_size
    return config


def reference_of(config, reference_dir: str | None = None) -> tuple[np.ndarray, str]:
    """`(test samples, name)`: the published test split of `reference_dir` (default
    `config.data.reference`), or our Metropolis test split where neither is set."""
    if reference_dir is not None:
        config = config.copy_and_resolve_references()
        config.data.reference = reference_dir
    splits = {} if config.data.reference else load_splits(config)
    return evaluation_reference(config, splits)


def evaluate_particle_run(
    run: RestoredRun,
    key: jax.Array,
    *,
    num_samples: int | None = None,
    num_steps: int | None = None,
    batch_size: int | None = None,
    reference_dir: str | None = None,
    nll_samples: int | None = None,
) -> dict[str, Any]:
    """Draws `num_samples` new samples of a restored run and scores them as training did.

    Unset arguments take the run's config (`evaluate.num_samples`, `sample.num_steps`,
    `sample.batch_size`, `data.reference`, `evaluate.nll_samples`).

    Returns:
      `{"eval/<metric>": value}`: the metrics of `sample_and_score` and the settings used
      (`eval/num_samples`, `eval/num_steps`, `eval/reference`).
    """
    config = sampling_config(run.config, num_steps=num_steps, batch_size=batch_size)
    num_samples = config.evaluate.num_samples if num_samples is None else num_samples
    nll_samples = config.evaluate.nll_samples if nll_samples is None else nll_samples
    config.sample.batch_size = min(config.sample.batch_size, num_samples)
    reference, reference_name = reference_of(config, reference_dir)
    _, metrics = sample_and_score(
        config,
        run.graphdef,
        run.params,
        key,
        reference,
        num_samples=num_samples,
        nll_samples=nll_samples,
    )
    settings = {
        "num_samples": num_samples,
        "num_steps": config.sample.num_steps,
        "reference": reference_name,
    }
    if "nll" in metrics:
        settings["nll_samples"] = min(nll_samples, len(reference))
    return {f"eval/{k}": v for k, v in {**settings, **metrics}.items()}


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
