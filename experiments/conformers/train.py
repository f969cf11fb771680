"""Conformer generation with the symmetrised target (paper 000, section 4.2): train and score.

`run(config, workdir)` trains the graph-conditioned generator of `config`
(`configs/conformers_common.py`) with checkpoints and exact resume (or for a
training-time budget; `experiments.common.run`), then generates `per_reference`
conformers per reference conformer for the test molecules with the EMA parameters and
scores them with COV-R/P and AMR-R/P (`symdiff_jax.metrics.conformers`), writing the
generated conformers as SDF. With `evaluate.measure_overhead` it also times loss +
gradient with the data and with the symmetrised target on the same batch
(`experiments.conformers.benchmark`).
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from typing import Any

import numpy as np

from experiments.common import state as common_state
from experiments.common.run import Hooks, RunKeys, train_and_evaluate
from experiments.common.state import make_schedule
from experiments.common.validation import mean_loss
from experiments.conformers.benchmark import measure_target_overhead
from experiments.conformers.evaluate import evaluation_plan, score_conformers, write_sdf
from experiments.conformers.input_pipeline import DEVICE_KEYS, fixed_batches, num_atom_features
from experiments.conformers.model import build_net
from experiments.conformers.sampling import generate_conformers
from symdiff_jax.conformers.datasets import load_conformer_data, train_batches
from symdiff_jax.conformers.objectives import diffusion_losses, flow_matching_losses
from symdiff_jax.metrics.conformers import summarise
from symdiff_jax.train.step import make_eval_step

# ----------------------------------------------------------------------------- pieces


def make_loss_fn(config, x_target: str | None = None):
    """`(net, batch, key) -> {"loss": [B], ...}` of the configured generator and target."""
    d = config.diffusion
    x_target = x_target or d.x_target
    if config.generator == "flow":

        def loss_fn(net, batch, key):
            return flow_matching_losses(
                net,
                key,
                batch,
                prior=d.prior,
                path_sigma=d.path_sigma,
                x_target=x_target,
                group=d.target_group,
                velocity_form=d.velocity_form,
                t_range=(d.t_min, d.t_max),
            )

        return loss_fn
    if config.generator != "diffusion":
        raise ValueError(
            f"config.generator must be 'flow' or 'diffusion'; got {config.generator!r}."
        )
    schedule = make_schedule(d)

    def loss_fn(net, batch, key):
        return diffusion_losses(
            net,
            key,
            batch,
            schedule,
            x_target=x_target,
            group=d.target_group,
            prediction=d.prediction,
        )

    return loss_fn


def _batch_stream(train, config, start_step: int = 0):
    return train_batches(
        train,
        config.batch_size,
        seed=config.seed,
        start_step=start_step,
        automorphism_width=config.data.max_automorphisms,
        bank_size=config.data.bank_size,
    )


# ----------------------------------------------------------------------------- the run


def run(config, workdir: str) -> dict[str, Any]:
    """Trains, generates and scores one conformer experiment; returns the flat metrics."""
    progress = config.train.progress_bar
    train = load_conformer_data(config.data, "train", progress=progress)
    valid = load_conformer_data(config.data, "val", progress=progress)
    valid_batches = fixed_batches(valid, config, config.data.max_valid or len(valid["positions"]))

    def make_evaluate(graphdef):
        # Validation always scores the data target, so runs with either target compare.
        eval_step = make_eval_step(graphdef, make_loss_fn(config, "data"))
        return lambda params, key: {"val/loss": mean_loss(eval_step, params, valid_batches, key)}

    def final_metrics(graphdef, params, keys: RunKeys, is_main: bool) -> dict[str, Any]:
        metrics: dict[str, Any] = {
            "train_conformers": len(train["positions"]),
            "train_molecules": len(train["num_atoms"]),
            # Molecules whose automorphism group has more rows than a batch keeps (their
            # target averages over a subset: the identity and the first K - 1).
            "train_molecules_group_cut": int(
                (
                    (np.diff(train["aut_offsets"]) > config.data.max_automorphisms)
                    | train["automorphisms_capped"]
                ).sum()
            ),
        }
        test = load_conformer_data(config.data, "test", progress=progress)
        chosen, requests = evaluation_plan(
            test, config.evaluate.num_molecules, config.evaluate.per_reference
        )
        t_gen = time.time()
        generated = generate_conformers(
            graphdef, params, keys.sample, test, requests, config, progress=progress
        )
        metrics["generate_time_s"] = time.time() - t_gen
        metrics["generated_conformers"] = len(requests)
        metrics["test_molecules"] = len(chosen)
        metrics["test_references"] = int(np.diff(test["conformer_offsets"])[chosen].sum())
        per_molecule, pairs = score_conformers(
            test, chosen, generated, requests, config, progress=progress
        )
        metrics.update(summarise(per_molecule))
        if config.evaluate.write_files and is_main:
            os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
            write_sdf(os.path.join(workdir, "samples", "generated.sdf"), pairs)
        if config.evaluate.measure_overhead:
            first = next(itertools.islice(_batch_stream(train, config), 1))
            batch = common_state.to_device(first, DEVICE_KEYS)
            losses = {t: make_loss_fn(config, t) for t in ("data", "symmetrised")}
            metrics.update(
                measure_target_overhead(config, graphdef, params, batch, keys.eval, losses)
            )
        return metrics

    hooks = Hooks(
        build_model=functools.partial(build_net, config, num_atom_features(train)),
        loss_fn=make_loss_fn(config),
        train_batches=lambda start: _batch_stream(train, config, start),
        device_keys=DEVICE_KEYS,
        make_evaluate=make_evaluate,
        best_metric="val/loss",
        final_metrics=final_metrics,
    )
    return train_and_evaluate(config, workdir, hooks)
