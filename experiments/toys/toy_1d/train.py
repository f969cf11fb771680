"""The 1D reflection toy of paper 000 (section 4.1, Table 1, Fig. 2) and its gradient variance.

Data = {+1}; G = {+1, -1} acting by `g . x = g x`. Every method trains the same odd
denoiser `D(x, t) = f(x, t) - f(-x, t)` (NSD+Enet) with the x0-loss

    w(t) (D(x_t, t) - target)^2,   x_t = alpha_t * 1 + sigma_t * eps,

and differs only in the target:

- `baseline`: the datum, `target = x0 = +1` (paper 000, eq. 3);
- `symmetrised`: the exact Z2-symmetrised posterior mean `phi_G(x_t, t)` (paper 000, eq. 4
  and its practical form), enumerating both group elements;
- `symmetrised_mc`: the Monte Carlo estimate of `phi_G` (paper 000, Algorithm 1) with
  `config.mc_num_group_samples` group elements drawn uniformly from G.

Protocol (the reference implementation's, vinhsuhi/Orbit-Diffusion `1D-toy`): a discrete
grid of T = 100 noise levels with `sigma` linear in the index from 0.01 to 0.999 and
`alpha = sqrt(1 - sigma^2)`, model time input `index / T`, uniform index sampling, SNR
loss weight `alpha^2 / sigma^2`, Adam with the learning rate multiplied by 0.8 every 8000
steps. Every `eval_every` steps, DDIM (x0-prediction, one model call per grid index,
the last x0-prediction is the sample) from 1,000 fixed `|N(0, 1)|` starts scores the model by
`mean |x - 1|` over the positive samples; per seed the best-scoring parameters are kept.
The final evaluation samples 100,000 points, half from `+|N(0,1)|` and half from
`-|N(0,1)|` starts, and reports `mean |x - sign(x)|` (the paper's "RMSD") and the exact W2
to `1/2 delta_{-1} + 1/2 delta_{+1}`, for the best-validation and the final parameters.
Two small departures from the reference code: the batch is the paper's 100 (the code
draws 200 copies of the datum per step; `config.batch_size`), and validation runs after
500, 1000, ..., 100,000 updates (the code's after 501, ..., 99,501).

Training is one jitted function per method: `lax.scan` over chunks of `eval_every` steps
(itself a `lax.scan` over steps) with validation between chunks, `vmap`-ed over seeds.
Seeds are paired across methods (same initial parameters, same noise stream).

Gradient variance (paper 000, Theorem 1): for one fixed equivariant model, the trace of the
covariance over draws of `x_t ~ q(x_t | x0 = +1)` at a fixed `t` of the per-example
parameter gradient of the loss with each method's target. Measured at the final
parameters of the first trained method (the baseline in the default config) and at
initialisation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.common.io import write_json
from experiments.toys.common import quantile_summary, scan_train_step, time_key
from experiments.toys.toy_1d.evaluate import (
    balanced_starts,
    ddim_sample,
    gradient_variance,
    make_eval_fn,
    sampling_indices,
)
from experiments.toys.toy_1d.model import (
    METHODS,
    Grid,
    build_model,
    init_seeds,
    loss_weight,
    make_grid,
    per_example_loss,
    reflection_target,
)
from experiments.toys.toy_1d.plots import plot_all
from symdiff_jax.metrics.toy_1d import positive_branch_error

Array = jax.Array


# ----------------------------------------------------------------------------- training


class TrainResult(NamedTuple):
    """Per-seed training outputs (leading axis = seed after vmap)."""

    final_params: Any
    best_params: Any
    best_val_error: Array  # []
    best_step: Array  # [] number of updates at the best validation
    losses: Array  # [num_train_steps] minibatch loss before each update
    val_errors: Array  # [num_chunks]


def make_train_fn(config, method: str, apply: Callable, grid: Grid) -> Callable:
    """Builds `train(params, key, val_starts) -> TrainResult` for one method and one seed.

    One jitted function per method: running the methods side by side under one `vmap`
    (with `lax.switch` on the target) was measured ~3x slower on CPU, since a batched
    switch evaluates every branch.

    Args:
      config: the toy_1d config.
      method: a name in `METHODS`.
      apply: `apply(params, x, t)`.
      grid: the noise levels.

    Returns:
      A pure function; `val_starts` is `[num_val_samples, 1]`.
    """
    num_steps, chunk = int(config.num_train_steps), int(config.eval_every)
    if num_steps % chunk != 0:
        raise ValueError(
            f"num_train_steps ({num_steps}) must be a multiple of eval_every ({chunk}): "
            "training runs in chunks of eval_every steps with a validation after each."
        )
    if method not in METHODS:
        raise ValueError(f"Unknown toy_1d method {method!r}; expected one of {METHODS}.")
    num_chunks = num_steps // chunk
    batch, num_t = int(config.batch_size), grid.alphas.shape[0]
    num_mc = int(config.mc_num_group_samples)
    lr = optax.exponential_decay(
        config.learning_rate,
        transition_steps=int(config.lr_decay_every),
        decay_rate=float(config.lr_decay_factor),
        staircase=True,
    )
    opt = optax.adam(lr)
    val_idx = sampling_indices(num_t, int(config.num_sampling_steps))

    def loss_fn(params, key):
        k_t, k_eps, k_tgt = jax.random.split(key, 3)
        i = jax.random.randint(k_t, (batch,), 0, num_t)
        alpha, sigma = grid.alphas[i], grid.sigmas[i]
        x0 = jnp.ones((batch, 1), jnp.float32)
        x_t = alpha[:, None] * x0 + sigma[:, None] * jax.random.normal(k_eps, x0.shape)
        target = reflection_target(method, k_tgt, x_t, x0, alpha, sigma, num_mc)
        w = loss_weight(config.diffusion.loss_weight, alpha, sigma)
        return jnp.mean(per_example_loss(apply, params, x_t, grid.times[i], target, w))

    def train(params, key, val_starts):
        train_step = scan_train_step(loss_fn, opt, key)

        def run_chunk(carry, c):
            params, opt_state, best, best_err, best_step = carry
            steps = c * chunk + jnp.arange(chunk)
            (params, opt_state), losses = jax.lax.scan(train_step, (params, opt_state), steps)
            err = positive_branch_error(ddim_sample(apply, params, val_starts, grid, val_idx))
            better = err <= best_err  # ties go to the later parameters (reference: `<=`)
            best = jax.tree.map(lambda n, o: jnp.where(better, n, o), params, best)
            best_err = jnp.where(better, err, best_err)
            best_step = jnp.where(better, (c + 1) * chunk, best_step)
            return (params, opt_state, best, best_err, best_step), (losses, err)

        carry = (params, opt.init(params), params, jnp.float32(jnp.inf), jnp.int32(0))
        carry, (losses, errs) = jax.lax.scan(run_chunk, carry, jnp.arange(num_chunks))
        params, _, best, best_err, best_step = carry
        return TrainResult(params, best, best_err, best_step, losses.reshape(-1), errs)

    return train


# ----------------------------------------------------------------------------- run


def run(config, workdir: str) -> dict[str, float]:
    """Trains every method and seed of `config`, evaluates, plots, and returns flat metrics.

    Each method trains all its seeds in one compiled function (`vmap` over seeds). Writes
    into `workdir`: `per_seed.json` (every seed's numbers),
    `loss_curves.png` (training loss vs iteration, mean over seeds with a 25-75% band, as in
    paper 000 Fig. 2), `val_error.png`, `histograms.png` (samples and their deviation from
    the orbit), `per_seed_metrics.png`, and `grad_variance.png`.

    Returns:
      Flat metrics: `rmsd/<m>` and `w2/<m>` (medians over seeds at the best-validation
      parameters, the paper's protocol; "rmsd" is the paper's name for
      `mean |x - sign(x)|`) with `_mean`, `_std`, `_q25`, `_q75`; `rmsd_final/<m>`,
      `w2_final/<m>` (final parameters, median); `grad_var/<m>/t_<t>` (median over seeds
      at the final parameters of the first method, `grad_var_model`),
      `grad_var_init/<m>/t_<t>` (at initialisation), `grad_var_ratio/t_<t>` and
      `grad_var_ratio_init/t_<t>` (median over seeds of baseline / symmetrised), and
      `time/train_s`, `time/eval_s`, `time/grad_var_s`.
    """
    os.makedirs(workdir, exist_ok=True)
    methods = tuple(config.methods)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"Unknown toy_1d method {m!r} in config.methods; expected {METHODS}.")
    if config.num_seeds < 1:
        raise ValueError(f"num_seeds must be at least 1; got {config.num_seeds}.")
    d = config.diffusion
    grid = make_grid(d.schedule, d.num_steps, d.sigma_min, d.sigma_max)
    _, init, apply = build_model(config)
    metrics: dict[str, float] = {}

    # Seeds are paired across methods: same init, same noise stream, same validation starts.
    root = jax.random.key(config.seed)
    seed_keys = [jax.random.fold_in(root, i) for i in range(config.num_seeds)]
    init_params = init_seeds(init, [jax.random.fold_in(k, 0) for k in seed_keys])
    train_keys = jnp.stack([jax.random.fold_in(k, 1) for k in seed_keys])
    val_starts = jnp.abs(
        jnp.stack(
            [
                jax.random.normal(jax.random.fold_in(k, 2), (config.num_val_samples, 1))
                for k in seed_keys
            ]
        )
    )

    start = time.time()
    per_method = []
    for m in methods:
        train = jax.jit(jax.vmap(make_train_fn(config, m, apply, grid)))
        per_method.append(jax.block_until_ready(train(init_params, train_keys, val_starts)))
    res = jax.tree.map(lambda *a: jnp.stack(a), *per_method)  # leaves [methods, seeds, ...]
    metrics["time/train_s"] = time.time() - start
    metrics["params"] = int(sum(np.size(x) for x in jax.tree.leaves(init(jax.random.key(0)))))
    # The last 1% of steps of the last method (the symmetrised target when both run),
    # median over seeds; per-method values are under train/loss/<method>.
    for j, m in enumerate(methods):
        losses = np.asarray(res.losses[j])
        tail = max(10, losses.shape[-1] // 100)
        metrics[f"train/loss/{m}"] = float(np.median(losses[:, -tail:].mean(-1)))
    metrics["train/loss"] = metrics[f"train/loss/{methods[-1]}"]

    start = time.time()
    eval_starts = balanced_starts(jax.random.key(config.eval_seed), config.num_samples)
    evaluate = jax.jit(jax.vmap(make_eval_fn(config, apply, grid), in_axes=(0, None)))
    results, per_seed = {}, {}
    for j, m in enumerate(methods):
        r = {"losses": np.asarray(res.losses[j]), "val_errors": np.asarray(res.val_errors[j])}
        for which, params in (("", res.best_params), ("_final", res.final_params)):
            x, mean_abs, w2 = evaluate(jax.tree.map(lambda a, j=j: a[j], params), eval_starts)
            r[f"x{which}"], r[f"rmsd{which}"], r[f"w2{which}"] = (
                np.asarray(x),
                np.asarray(mean_abs, np.float64),
                np.asarray(w2, np.float64),
            )
        results[m] = r
        for name in ("rmsd", "w2"):
            for suffix, value in quantile_summary(r[name]).items():
                metrics[f"{name}/{m}{suffix}"] = value
            metrics[f"{name}_final/{m}"] = float(np.median(r[f"{name}_final"]))
        per_seed[m] = {
            "seed_index": list(range(config.num_seeds)),
            "rmsd": r["rmsd"],
            "w2": r["w2"],
            "rmsd_final": r["rmsd_final"],
            "w2_final": r["w2_final"],
            "best_step": np.asarray(res.best_step[j]),
            "best_val_error": np.asarray(res.best_val_error[j]),
            "final_val_error": r["val_errors"][:, -1],
        }
    metrics["time/eval_s"] = time.time() - start

    # Gradient variance at fixed t: one model, every target, the same draws of x_t.
    start = time.time()
    gv_times = [float(t) for t in config.grad_var_times]
    gv_index = jnp.asarray([int(np.argmin(np.abs(np.asarray(grid.times) - t))) for t in gv_times])
    gv_model = methods[0]

    @jax.jit
    def gv_all(params, key):
        def per_seed_fn(p, k):
            def per_time(args):
                j, i = args
                return gradient_variance(
                    apply,
                    p,
                    jax.random.fold_in(k, j),
                    grid,
                    i,
                    int(config.grad_var_num_draws),
                    METHODS,
                    config.diffusion.loss_weight,
                    int(config.mc_num_group_samples),
                )

            return jax.lax.map(per_time, (jnp.arange(len(gv_times)), gv_index))

        return jax.vmap(per_seed_fn)(params, jax.random.split(key, config.num_seeds))

    gv_key = jax.random.fold_in(root, 10_000)
    trained = jax.tree.map(lambda a: a[methods.index(gv_model)], res.final_params)
    gv_trained = np.asarray(gv_all(trained, gv_key), np.float64)  # [seeds, times, METHODS]
    gv_init = np.asarray(gv_all(init_params, gv_key), np.float64)
    b, s = METHODS.index("baseline"), METHODS.index("symmetrised")
    for j, t in enumerate(gv_times):
        tk = time_key(t)
        for k, m in enumerate(METHODS):
            metrics[f"grad_var/{m}/{tk}"] = float(np.median(gv_trained[:, j, k]))
            metrics[f"grad_var_init/{m}/{tk}"] = float(np.median(gv_init[:, j, k]))
        metrics[f"grad_var_ratio/{tk}"] = float(
            np.median(gv_trained[:, j, b] / gv_trained[:, j, s])
        )
        metrics[f"grad_var_ratio_init/{tk}"] = float(np.median(gv_init[:, j, b] / gv_init[:, j, s]))
    metrics["time/grad_var_s"] = time.time() - start
    per_seed["grad_var"] = {
        "model": f"final parameters of {gv_model!r} (trained) and the shared initialisation (init)",
        "methods": list(METHODS),
        "times": [float(grid.times[i]) for i in np.asarray(gv_index)],
        "trained": gv_trained,
        "init": gv_init,
    }
    write_json(os.path.join(workdir, "per_seed.json"), per_seed)
    plot_all(config, workdir, methods, results, gv_times, gv_model, gv_trained, gv_init)
    return metrics
