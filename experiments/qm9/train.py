"""Molecule generation with SymDiff and its baselines: QM9 and GEOM-Drugs (paper 002, 4.1-4.2).

`run(config, workdir)` trains the configured denoiser (`configs/qm9_common.py`) with
checkpoints and exact resume (`experiments.common.run`), then samples with the EMA
parameters and scores the samples (atom/molecule stability, validity, uniqueness),
writing them as npz, SDF, xyz files and a picture. The pieces (`build_model`,
`make_loss_fn`, `make_nll_fn`, ...) are reused by `experiments.sample`,
`experiments.evaluate`, `experiments.benchmark` and the notebooks.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from experiments.common.run import Hooks, RunKeys, train_and_evaluate
from experiments.common.state import make_schedule
from experiments.qm9.evaluate import make_nll_fn, validation_nll
from experiments.qm9.input_pipeline import (
    DEVICE_KEYS,
    dataset_of,
    fixed_batches,
    load_split,
    novelty_smiles,
    resolve_molecule_source,
    train_batches,
)
from experiments.qm9.model import build_model, pretrained_eps
from experiments.qm9.sampling import (
    check_sampler,
    generator_of,
    sample_metrics,
    sample_molecules_batched,
    save_samples,
)
from symdiff_jax.data import size_histogram
from symdiff_jax.diffusion.molecules import molecules_from_batch
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.flow_matching.molecules import molecule_flow_losses
from symdiff_jax.losses.molecules import training_losses
from symdiff_jax.metrics import stability
from symdiff_jax.train.step import make_eval_step

# ----------------------------------------------------------------------------- pieces


def make_loss_fn(config, schedule: Schedule):
    """`(model, batch, key) -> {"loss": [B], ...}`: SymDiff's objective.

    Diffusion (paper 002, eq. 14) or, with `config.generator="flow_matching"`, flow
    matching on `[x, h]` (appendix E.2; `flow_matching.molecule_flow_losses`).
    """
    d = config.diffusion
    spec = dataset_of(config).spec

    if generator_of(config) == "flow_matching":

        def flow_loss_fn(model, batch, key):
            return molecule_flow_losses(
                model,
                key,
                molecules_from_batch(batch, spec),
                spec=spec,
                sigma_min=d.sigma_min,
                x_target=d.x_target,
                target_group=d.target_group,
                max_atoms=config.data.max_atoms,
            )

        return flow_loss_fn

    def loss_fn(model, batch, key):
        return training_losses(
            model,
            key,
            molecules_from_batch(batch, spec),
            schedule,
            num_steps=d.num_steps,
            spec=spec,
            x_target=d.x_target,
            target_group=d.target_group,
            augment_group=d.augment_group or None,
            max_atoms=config.data.max_atoms,
        )

    return loss_fn


def sampling_options(config, schedule: Schedule) -> dict[str, Any]:
    """The keyword arguments of `sample_molecules_batched` that come from the config."""
    dataset = dataset_of(config)
    return dict(
        schedule=schedule,
        num_steps=config.sample.num_steps,
        sampler=check_sampler(config, config.sample.sampler),
        max_atoms=config.data.max_atoms,
        bucket_sizes=tuple(config.data.bucket_sizes),
        spec=dataset.spec,
        atom_types=dataset.atom_types,
    )


# ----------------------------------------------------------------------------- the run


def run(config, workdir: str) -> dict[str, Any]:
    """Trains, samples and evaluates one QM9/GEOM variant; returns the flat metrics."""
    resolve_molecule_source(config)  # data.dataset = "molecules": elements, width from the data
    train = load_split(config, "train", config.data.max_train)
    valid = load_split(config, "valid", config.data.max_valid)
    histogram = size_histogram(train["num_atoms"], config.data.max_atoms)
    schedule = make_schedule(config.diffusion)
    dataset = dataset_of(config)
    valid_batches = fixed_batches(
        valid, min(config.batch_size, len(valid["num_atoms"])), dataset.featurise
    )
    sample_kw = sampling_options(config, schedule)
    flow = generator_of(config) == "flow_matching"

    def make_evaluate(graphdef):
        if flow:  # no likelihood bound: the validation loss ranks checkpoints
            step = make_eval_step(graphdef, make_loss_fn(config, schedule))
            return lambda params, key: {
                "val/loss": validation_nll(step, params, valid_batches, key, name="loss")
            }
        nll_step = make_eval_step(graphdef, make_nll_fn(config, schedule, histogram))
        return lambda params, key: {"val/nll": validation_nll(nll_step, params, valid_batches, key)}

    def make_progress(graphdef):
        def progress(params, key):
            samples = sample_molecules_batched(
                graphdef,
                params,
                key,
                histogram,
                config.train.num_progress_samples,
                batch_size=min(config.sample.batch_size, config.train.num_progress_samples),
                **sample_kw,
            )
            st = stability(samples["positions"], samples["atomic_numbers"], samples["mask"])
            return {f"progress/{k}": float(v) for k, v in st.items()}

        return progress

    def final_metrics(graphdef, params, keys: RunKeys, is_main: bool) -> dict[str, Any]:
        t_eval = time.time()
        samples = sample_molecules_batched(
            graphdef,
            params,
            keys.sample,
            histogram,
            config.evaluate.num_samples,
            batch_size=min(config.sample.batch_size, config.evaluate.num_samples),
            progress=config.train.progress_bar,
            **sample_kw,
        )
        metrics: dict[str, Any] = {"sample_time_s": time.time() - t_eval}
        metrics["num_samples"] = config.evaluate.num_samples
        metrics.update(sample_metrics(samples, novelty_smiles(config, train)))
        if config.evaluate.write_files and is_main:
            paths = save_samples(os.path.join(workdir, "samples"), samples)
            metrics["samples_png"] = paths.get("png", "")
        return metrics

    hooks = Hooks(
        build_model=functools.partial(build_model, config),
        loss_fn=make_loss_fn(config, schedule),
        train_batches=lambda start: train_batches(train, config, start),
        device_keys=DEVICE_KEYS,
        make_evaluate=make_evaluate,
        best_metric="val/loss" if flow else "val/nll",
        final_metrics=final_metrics,
        make_progress=make_progress,
        prepare_params=pretrained_eps(config),
    )
    return train_and_evaluate(config, workdir, hooks)
