"""Training and scoring of one particle-system variant (`configs/dw4.py`, `configs/lj13.py`).

`run(config, workdir)` trains with `experiments.common.run.train_and_evaluate` and returns
the metrics of `metrics.json`: `energy_w2`, `distance_w2`, `distance_tv` of
`evaluate.num_samples` samples against the test split (ours, or the published one with
`data.reference`), `sample_s_per_1000`, `nll` for the deterministic EGNN flow, plus the
run skeleton's `params`, `steps`, `train_time_s`, `val/loss`. Writes `samples.npy`
(`[num_samples, N, d]`, CoM-free, data units) and `histograms.png`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common.run import Hooks, RunKeys, train_and_evaluate
from experiments.common.validation import mean_loss
from experiments.particles import evaluate as particle_eval
from experiments.particles.input_pipeline import (
    DEVICE_KEYS,
    evaluation_reference,
    fixed_batches,
    load_splits,
    train_batches,
)
from experiments.particles.model import GROUPS, build_net
from symdiff_jax.flow_matching import flow_matching_loss
from symdiff_jax.score_matching import get_sde, score_matching_loss
from symdiff_jax.symmetrise import haar_gamma
from symdiff_jax.train.step import make_eval_step


def make_loss_fn(config, x_target: str | None = None):
    """`(net, batch, key) -> {"loss": [B]}`: eq. 32 (flow) or eq. 25 (score) of paper 002.

    `t ~ U(diffusion.t_min, diffusion.t_max)`; the SymDiff kinds use `net.gamma()`;
    `model.augment` rotates every data point by a Haar O(d) draw first (`dit_aug`).
    """
    d = config.diffusion
    target = x_target or d.x_target
    scale = config.data.scale

    def loss_fn(net, batch, key):
        x1 = batch["x"] / scale
        k_t, k_aug, k_loss = jax.random.split(key, 3)
        if config.model.augment:
            rot = haar_gamma(GROUPS[x1.shape[-1]])(k_aug, x1)
            x1 = jnp.einsum("bnj,bij->bni", x1, rot)
        t = jax.random.uniform(k_t, x1.shape[:1], x1.dtype, d.t_min, d.t_max)
        if config.generator == "flow":
            loss = flow_matching_loss(
                k_loss, net, x1, t, sigma_min=d.sigma_min, gamma=net.gamma(), target=target
            )
        else:
            sde = get_sde(d.schedule)
            loss = score_matching_loss(k_loss, net, x1, t, sde, gamma=net.gamma(), target=target)
        return {"loss": loss}

    return loss_fn


def final_scores(config, workdir, graphdef, params, key, splits, write: bool) -> dict[str, Any]:
    """Samples, scores them against the evaluation reference, writes the files."""
    reference, reference_name = evaluation_reference(config, splits)
    samples, metrics = particle_eval.sample_and_score(
        config,
        graphdef,
        params,
        key,
        reference,
        num_samples=config.evaluate.num_samples,
        nll_samples=config.evaluate.nll_samples,
    )
    metrics["reference"] = reference_name
    if write:
        np.save(os.path.join(workdir, "samples.npy"), samples)
        if config.evaluate.write_plots:
            finite = np.isfinite(samples).all(axis=(1, 2))
            particle_eval.write_histograms(
                os.path.join(workdir, "histograms.png"), samples[finite], reference, config.system
            )
    return metrics


def run(config, workdir: str) -> dict[str, Any]:
    """Trains `config`'s variant into `workdir`; returns the flat metrics."""
    splits = load_splits(config)
    valid = fixed_batches(splits["val"], config.batch_size, config.train.val_batches)

    def make_evaluate(graphdef):
        # Validation scores the data target, so runs with either target compare.
        eval_step = make_eval_step(graphdef, make_loss_fn(config, "data"))
        return lambda params, key: {"val/loss": mean_loss(eval_step, params, valid, key)}

    def final_metrics(graphdef, params, keys: RunKeys, is_main: bool) -> dict[str, Any]:
        out = {"train_samples": len(splits["train"])}
        out.update(final_scores(config, workdir, graphdef, params, keys.sample, splits, is_main))
        return out

    hooks = Hooks(
        build_model=functools.partial(build_net, config),
        loss_fn=make_loss_fn(config),
        train_batches=lambda start: train_batches(
            splits["train"], config.batch_size, config.seed, start
        ),
        device_keys=DEVICE_KEYS,
        make_evaluate=make_evaluate,
        best_metric="val/loss",
        final_metrics=final_metrics,
    )
    return train_and_evaluate(config, workdir, hooks)
