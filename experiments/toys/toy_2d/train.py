"""The 2D rotation + permutation toy of paper 000 (section 4.1, Fig. 3).

One training sample, four points on a line; an EGNN denoiser (E(2) x S_4
equivariant, x0-prediction) trained with

- `baseline`: the plain data target, `w(t) ||phi(x_t, t) - x0||^2` (paper 000, eq. 3);
- `symmetrised`: the exact symmetrised target over O(2) x S_4,
  `w(t) ||phi(x_t, t) - phi_G(x_t, t)||^2` (paper 000, eq. 4), computed in closed
  form (von Mises over SO(2), enumeration of reflections and permutations).

Both methods start from the same initial network and see the same noise at every
step. Samples come from deterministic DDIM with 10, 15, ..., 50 steps; the metric
is the RMSD after the best rotation / reflection, translation and permutation,
averaged over the samples (Fig. 3c). The script also measures the variance of the
per-example gradient estimators of the two losses for one equivariant network at
several noise levels (paper 000, Theorem 1).

Everything heavy is a pure, jitted function: the train step is scanned with
`lax.scan` over chunks of steps; sampling scans over DDIM steps.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from experiments.common.state import make_schedule
from experiments.toys.common import scan_train_step, time_key
from experiments.toys.toy_2d.evaluate import make_gradient_variance, sample
from experiments.toys.toy_2d.model import (
    METHODS,
    make_denoiser,
    make_model,
    make_permutations,
    method_loss,
    symmetrised_targets,
    toy_data,
)
from experiments.toys.toy_2d.plots import plot_results
from symdiff_jax.diffusion import prior_sample
from symdiff_jax.metrics.alignment import aligned_rmsd, superimpose

# ----------------------------------------------------------------------------- training


def make_optimizer(config) -> optax.GradientTransformation:
    """Adam with a staircase exponential decay (the reference's StepLR)."""
    tr = config.train
    lr = optax.exponential_decay(
        tr.learning_rate, tr.lr_decay_every, tr.lr_decay_rate, staircase=True
    )
    return optax.adam(lr)


def train(
    config, method: str, params, key: jax.Array, *, denoise, x0, schedule, permutations
) -> tuple[Any, np.ndarray]:
    """Trains one method from `params`; returns `(params, losses [num_steps])`.

    The step is a pure function of `(params, opt_state, step)`; its randomness is
    `fold_in(key, step)`, so two methods trained with the same key see the same
    times and noises. Steps are scanned in jitted chunks of `config.train.chunk`.
    """
    tr = config.train
    opt = make_optimizer(config)
    loss_fn = method_loss(
        method, denoise=denoise, x0=x0, schedule=schedule, config=config, permutations=permutations
    )

    def mean_loss(p, k):
        k_t, k_noise = jax.random.split(k)
        t = jax.random.uniform(k_t, (tr.batch_size,))
        return jnp.mean(loss_fn(p, k_noise, t))

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run_chunk(params, opt_state, steps):
        body = scan_train_step(mean_loss, opt, key)
        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), steps)
        return params, opt_state, losses

    params = jax.tree.map(jnp.array, params)  # a private copy: the chunks donate it
    opt_state = opt.init(params)
    losses = []
    for start in range(0, tr.num_steps, tr.chunk):
        steps = jnp.arange(start, min(start + tr.chunk, tr.num_steps))
        params, opt_state, chunk_losses = run_chunk(params, opt_state, steps)
        losses.append(np.asarray(chunk_losses))
    return params, np.concatenate(losses) if losses else np.zeros((0,))


# ----------------------------------------------------------------------------- run


def run(config, workdir: str) -> dict[str, float]:
    """Trains both methods, samples, measures, plots. Returns flat metrics.

    Keys: `rmsd/<method>/steps_<k>`; `grad_var/<loss>/t_<t>` and
    `grad_var_ratio/t_<t>` (baseline / symmetrised) for the initial network,
    and `grad_var@<method>/<loss>/t_<t>`, `grad_var_ratio@<method>/t_<t>` for the
    network trained by `<method>` when `config.grad_var.params` lists it;
    `rmsd/oracle/steps_<k>` (DDIM with the exact phi_G, when `config.eval.oracle`);
    `train/loss/<method>` (mean of the last 1% of steps, at least 10);
    `wall_time_s`. Files in
    `workdir`: `toy_2d.png` and its panels, `results.npz` (losses, samples,
    RMSD curves).
    """
    start = time.time()
    os.makedirs(workdir, exist_ok=True)
    for m in config.methods:
        if m not in METHODS:
            raise ValueError(f"Unknown method {m!r} in config.methods; expected {METHODS}.")
    for where in config.grad_var.params:
        if where != "init" and where not in config.methods:
            raise ValueError(
                f"config.grad_var.params may hold 'init' and trained methods "
                f"{tuple(config.methods)}; got {where!r}."
            )
    x0 = toy_data(config.data.points)
    n = x0.shape[0]
    schedule = make_schedule(config.diffusion)
    permutations = jnp.asarray(make_permutations(config, n))

    key = jax.random.key(config.seed)
    k_init, k_train, k_prior, k_grad = jax.random.split(key, 4)
    model = make_model(config, k_init)
    graphdef, init_params = nnx.split(model, nnx.Param)
    denoise = make_denoiser(graphdef)
    common = dict(denoise=denoise, x0=x0, schedule=schedule, permutations=permutations)

    metrics: dict[str, float] = {}
    trained, losses = {}, {}
    for m in config.methods:
        tic = time.time()
        trained[m], losses[m] = train(config, m, init_params, k_train, **common)
        logging.info("toy_2d: trained %s in %.1f s", m, time.time() - tic)
        tail = max(10, len(losses[m]) // 100)
        metrics[f"train/loss/{m}"] = float(np.mean(losses[m][-tail:]))
    # The last method's (the symmetrised target when both run); per-method keys above.
    metrics["train/loss"] = metrics[f"train/loss/{config.methods[-1]}"]
    metrics["params"] = int(sum(np.size(x) for x in jax.tree.leaves(init_params)))

    steps = tuple(sorted(int(s) for s in config.eval.sampling_steps))
    num = config.eval.num_samples
    z_T = prior_sample(k_prior, (num, n, 2), com_free=config.diffusion.com_free)
    sample_jit = jax.jit(
        functools.partial(sample, denoise=denoise, schedule=schedule, config=config),
        static_argnums=3,
    )
    align = dict(permutations=permutations, allow_reflection=config.eval.allow_reflection)
    rmsd_jit = jax.jit(lambda xs: aligned_rmsd(xs, x0, **align))
    superimpose_jit = jax.jit(lambda xs: superimpose(xs, x0, **align)[0])
    num_plot = config.eval.num_plot_samples

    def oracle(params, z, t):
        del params
        alpha, sigma = schedule.alpha_sigma(t)
        return symmetrised_targets(z, x0, alpha, sigma, config.group, permutations)

    oracle_jit = jax.jit(
        functools.partial(sample, denoise=oracle, schedule=schedule, config=config),
        static_argnums=3,
    )
    samplers = {m: functools.partial(sample_jit, trained[m]) for m in config.methods}
    if config.eval.oracle:
        samplers["oracle"] = functools.partial(oracle_jit, None)

    curves, plot_samples = {}, {}
    for m, sampler in samplers.items():
        curve = []
        for s in sorted(set(steps) | {int(config.eval.plot_steps)}):
            xs = sampler(k_prior, z_T, s)
            if s == config.eval.plot_steps:
                plot_samples[m] = np.asarray(superimpose_jit(xs[:num_plot]))
            if s in steps:
                value = float(jnp.mean(rmsd_jit(xs)))
                metrics[f"rmsd/{m}/steps_{s}"] = value
                curve.append(value)
        curves[m] = np.asarray(curve)

    grad_var = make_gradient_variance(config, **common)
    for where in config.grad_var.params:
        prefix = "" if where == "init" else f"@{where}"
        at = init_params if where == "init" else trained[where]
        for i, t in enumerate(config.grad_var.times):
            var = grad_var(at, jax.random.fold_in(k_grad, i), float(t))
            for m, v in var.items():
                metrics[f"grad_var{prefix}/{m}/{time_key(t)}"] = v
            ratio = var["baseline"] / max(var["symmetrised"], 1e-30)
            metrics[f"grad_var_ratio{prefix}/{time_key(t)}"] = ratio

    np.savez(
        os.path.join(workdir, "results.npz"),
        steps=np.asarray(steps),
        **{f"loss_{m}": v for m, v in losses.items()},
        **{f"samples_{m}": v for m, v in plot_samples.items()},
        **{f"rmsd_{m}": v for m, v in curves.items()},
    )
    plot_results(workdir, losses, plot_samples, curves, np.asarray(x0), steps)
    metrics["wall_time_s"] = time.time() - start
    return metrics
