"""Drawing molecules from a trained generation model, scoring and writing them."""

from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.common.state import compiled_with_model
from symdiff_jax.data import sample_num_atoms, sampling_batches
from symdiff_jax.diffusion.molecules import QM9_FEATURES, FeatureSpec, sample_molecules
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.flow_matching.molecules import sample_molecules_flow
from symdiff_jax.metrics import rdkit_metrics, stability


def atomic_numbers_from_one_hot(
    one_hot: np.ndarray, mask: np.ndarray, atom_types=(1, 6, 7, 8, 9)
) -> np.ndarray:
    """Atomic numbers `[B, N]` from sampled one-hot types (0 on padded rows)."""
    z = np.asarray(atom_types)[np.argmax(np.asarray(one_hot), axis=-1)]
    return (z * (np.asarray(mask) > 0)).astype(np.int32)


SAMPLERS = {"diffusion": ("ancestral", "ddim"), "flow_matching": ("euler",)}
"""The samplers of each generative process (`config.generator`)."""


def generator_of(config) -> str:
    """`config.generator`: "diffusion" (paper 002, eq. 14) or "flow_matching" (appendix E.2).

    Configs written before the key existed are diffusion runs.
    """
    generator = config.get("generator", "diffusion")
    if generator not in SAMPLERS:
        raise ValueError(f"config.generator must be one of {tuple(SAMPLERS)}; got {generator!r}.")
    return generator


def check_sampler(config, sampler: str) -> str:
    """Returns `sampler` if it samples the model `config` trains, else a one-line ValueError."""
    allowed = SAMPLERS[generator_of(config)]
    if sampler not in allowed:
        raise ValueError(
            f"sampler {sampler!r} does not sample a {generator_of(config)} model; "
            f"use one of {allowed}."
        )
    return sampler


def sample_batch(
    model: nnx.Module,
    key: jax.Array,
    mask: jax.Array,
    schedule: Schedule,
    num_steps: int,
    spec: FeatureSpec,
    sampler: str,
) -> dict[str, jax.Array]:
    """One batch of molecules of the sizes in `mask`.

    `sampler="euler"` is the flow-matching sampler (`flow_matching.sample_molecules_flow`,
    which ignores the schedule); the others are `diffusion.molecules.sample_molecules`.
    """
    if sampler == "euler":
        return sample_molecules_flow(model, key, mask, num_steps=num_steps, spec=spec)
    return sample_molecules(
        model, key, mask, schedule, num_steps=num_steps, spec=spec, sampler=sampler
    )


def compiled_sampler(graphdef, schedule: Schedule, num_steps: int, sampler: str, spec):
    """`jit((params, key, mask) -> samples)`, compiled once per model and settings."""
    return compiled_with_model(sample_batch, graphdef, schedule, int(num_steps), spec, sampler)


def sample_molecules_batched(
    graphdef,
    params,
    key: jax.Array,
    histogram: np.ndarray,
    num_samples: int,
    *,
    schedule: Schedule,
    num_steps: int,
    batch_size: int,
    sampler: str = "ancestral",
    max_atoms: int = 29,
    bucket_sizes: tuple[int, ...] = (),
    progress: bool = False,
    spec: FeatureSpec = QM9_FEATURES,
    atom_types: tuple[int, ...] = (1, 6, 7, 8, 9),
) -> dict[str, np.ndarray]:
    """`num_samples` molecules with sizes from `histogram`, in compiled batches.

    The sizes are drawn first; with `bucket_sizes` each batch is padded to a bucket width
    (`data.sampling_batches`: the least padding and fewest batches, bounded shapes, so
    bounded compilations), which skips the work on padding that dominates small molecules.

    Returns numpy `positions [S, max_atoms, 3]`, `atomic_numbers [S, max_atoms]`,
    `charges [S, max_atoms]`, `mask [S, max_atoms]`, `num_atoms [S]`, in the order of
    the drawn sizes.
    """
    fn = compiled_sampler(graphdef, schedule, num_steps, sampler, spec)
    k_sizes, k_batches = jax.random.split(key)
    sizes = np.asarray(sample_num_atoms(k_sizes, histogram, (int(num_samples),)))
    plan = sampling_batches(
        sizes, batch_size, bucket_sizes=tuple(bucket_sizes) or None, max_atoms=max_atoms
    )
    out = {
        "positions": np.zeros((num_samples, max_atoms, 3), np.float32),
        "atomic_numbers": np.zeros((num_samples, max_atoms), np.int32),
        "charges": np.zeros((num_samples, max_atoms), np.int32),
        "mask": np.zeros((num_samples, max_atoms), np.float32),
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(num_samples), desc="sample", unit="mol", dynamic_ncols=True)
    for b, (rows, width) in enumerate(plan):
        mask = (np.arange(width)[None] < sizes[rows, None]).astype(np.float32)
        s = jax.device_get(fn(params, jax.random.fold_in(k_batches, b), jnp.asarray(mask)))
        # Rows past the batch's distinct molecules repeat them (extra draws): dropped.
        real = len(np.unique(rows))
        dest, m = rows[:real], np.asarray(s["mask"])[:real]
        out["positions"][dest, :width] = np.asarray(s["positions"])[:real]
        out["atomic_numbers"][dest, :width] = atomic_numbers_from_one_hot(
            np.asarray(s["one_hot"])[:real], m, atom_types
        )
        out["charges"][dest, :width] = np.asarray(s["charges"])[:real]
        out["mask"][dest, :width] = m
        if bar is not None:
            bar.update(real)
    if bar is not None:
        bar.close()
    out["num_atoms"] = out["mask"].sum(-1).astype(np.int32)
    return out


def sample_metrics(samples: dict[str, np.ndarray], train_smiles=None) -> dict[str, float]:
    """Stability, validity, uniqueness (and novelty with `train_smiles`) of samples."""
    metrics = dict(stability(samples["positions"], samples["atomic_numbers"], samples["mask"]))
    rd = rdkit_metrics(
        samples["positions"],
        samples["atomic_numbers"],
        samples["mask"],
        train_smiles=train_smiles,
        canonicalise_train=False,
    )
    metrics.update({k: v for k, v in rd.items() if v is not None})
    return {k: float(v) for k, v in metrics.items()}


def save_samples(directory: str, samples: dict[str, np.ndarray], *, picture: bool = True) -> dict:
    """Writes `samples.npz`, `samples.sdf`, `xyz/`, `samples.png` and (with `ase`) `samples.db`."""
    from symdiff_jax.data.drawing import molecule_grid_png
    from symdiff_jax.data.writers import write_samples_npz, write_sdf, write_xyz

    os.makedirs(directory, exist_ok=True)
    args = (samples["positions"], samples["atomic_numbers"], samples["mask"])
    paths = {
        "npz": os.path.join(directory, "samples.npz"),
        "sdf": os.path.join(directory, "samples.sdf"),
        "xyz": os.path.join(directory, "xyz"),
    }
    write_samples_npz(paths["npz"], *args)
    write_sdf(paths["sdf"], *args)
    write_xyz(paths["xyz"], *args)
    if importlib.util.find_spec("ase") is not None:  # the `ase` extra
        from symdiff_jax.data.ase_io import write_ase_db

        paths["ase"] = os.path.join(directory, "samples.db")
        write_ase_db(paths["ase"], samples["positions"], samples["atomic_numbers"], samples["mask"])
    if picture:
        paths["png"] = molecule_grid_png(os.path.join(directory, "samples.png"), *args)
    return paths
