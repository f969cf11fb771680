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
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from symdiff_jax.metrics.toy_1d import (
    mean_abs_to_nearest,
    positive_branch_error,
    w2_to_reflection_orbit,
)
from symdiff_jax.models.mlp import ReflectionDenoiser

Array = jax.Array
METHODS = ("baseline", "symmetrised", "symmetrised_mc")
REFLECTION_GROUP = np.array([[[1.0]], [[-1.0]]], dtype=np.float32)  # Z2 as [K, d, d]


# ----------------------------------------------------------------------------- grid


class Grid(NamedTuple):
    """The discrete noise levels of the toy: `alphas`, `sigmas`, model `times`, each `[T]`."""

    alphas: Array
    sigmas: Array
    times: Array


def make_grid(
    schedule: str = "linear_sigma",
    num_timesteps: int = 100,
    sigma_min: float = 0.01,
    sigma_max: float = 0.999,
) -> Grid:
    """Noise levels indexed `0..T-1` (index 0 = least noise).

    `"linear_sigma"` is the reference code's grid: `sigma_i = linspace(sigma_min,
    sigma_max, T)[i]`, `alpha_i = sqrt(1 - sigma_i^2)`, model time `i / T`. Any other name
    is looked up with `symdiff_jax.diffusion.schedules.get_schedule(name, num_steps=T)`
    (or without `num_steps` for "linear") and evaluated at `t_i = (i + 1) / T`, which is
    also the model time.

    Args:
      schedule: schedule name.
      num_timesteps: T.
      sigma_min, sigma_max: endpoints of the `"linear_sigma"` grid.

    Returns:
      A `Grid` of float32 arrays `[T]`.
    """
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps must be at least 2; got {num_timesteps}.")
    if schedule == "linear_sigma":
        if not 0.0 < sigma_min < sigma_max < 1.0:
            raise ValueError(
                "The linear_sigma grid needs 0 < sigma_min < sigma_max < 1; got "
                f"sigma_min={sigma_min}, sigma_max={sigma_max}."
            )
        sigmas = np.linspace(sigma_min, sigma_max, num_timesteps)
        alphas = np.sqrt(1.0 - sigmas**2)
        times = np.arange(num_timesteps) / num_timesteps
    else:
        from symdiff_jax.diffusion.schedules import get_schedule

        kwargs = {} if schedule == "linear" else {"num_steps": num_timesteps}
        sched = get_schedule(schedule, **kwargs)
        times = np.arange(1, num_timesteps + 1) / num_timesteps
        alphas, sigmas = (np.asarray(a, np.float64) for a in sched.alpha_sigma(times))
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return Grid(f32(alphas), f32(sigmas), f32(times))


def sampling_indices(num_timesteps: int, num_sampling_steps: int) -> np.ndarray:
    """Grid indices visited by DDIM, from `T - 1` down to 0 (`num_sampling_steps` of them)."""
    if not 2 <= num_sampling_steps <= num_timesteps:
        raise ValueError(
            f"num_sampling_steps must lie in [2, num_timesteps={num_timesteps}]; "
            f"got {num_sampling_steps}."
        )
    idx = np.round(np.linspace(num_timesteps - 1, 0, num_sampling_steps)).astype(np.int32)
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"num_sampling_steps={num_sampling_steps} repeats grid indices.")
    return idx


# ----------------------------------------------------------------------------- model


def build_model(config) -> tuple[nnx.GraphDef, Callable[[Array], Any], Callable]:
    """The odd denoiser as pure functions.

    Returns:
      `(graphdef, init, apply)` with `init(key) -> params` (an `nnx.State`, built eagerly)
      and `apply(params, x [..., 1], t [...]) -> [..., 1]` (pure, jittable).
    """
    hidden = tuple(config.hidden_sizes)

    def make(key):
        return ReflectionDenoiser(1, hidden, rngs=nnx.Rngs(key), init=config.init)

    graphdef, _ = nnx.split(make(jax.random.key(0)))

    def init(key):
        return nnx.split(make(key))[1]

    def apply(params, x, t):
        return nnx.merge(graphdef, params)(x, t)

    return graphdef, init, apply


def init_seeds(init: Callable, keys: Array):
    """Initial parameters of every seed, stacked on a leading axis.

    Built eagerly one seed at a time: tracing the NNX constructor under `jit(vmap)` costs
    seconds of compile time for a 91-parameter model.
    """
    params = [init(k) for k in keys]
    return jax.tree.map(lambda *a: jnp.stack(a), *params)


# ----------------------------------------------------------------------------- targets


def reflection_target(
    method: str, key: Array, x_t: Array, x0: Array, alpha: Array, sigma: Array, num_mc: int
) -> Array:
    """Regression target of each method for a batch `x_t [B, 1]`, `x0 [B, 1]`.

    `alpha`, `sigma` are `[B]`. `baseline` returns `x0`; `symmetrised` the exact
    `phi_G(x_t)` for G = Z2 (`symmetrised_target_exact`); `symmetrised_mc` the
    Algorithm 1 estimate with `num_mc` group samples (`symmetrised_target_mc`).
    """
    if method == "baseline":
        return x0
    from symdiff_jax.targets import symmetrised_target_exact, symmetrised_target_mc

    group = jnp.asarray(REFLECTION_GROUP, x_t.dtype)
    # Per example: one "atom" (N = 1) in d = 1, a bank of M = 1 clean sample.
    xt_b, x0_b = x_t[:, None, :], x0[:, None, None, :]
    if method == "symmetrised":
        fn = lambda xt, x0_, a, s: symmetrised_target_exact(xt, x0_, a, s, group=group)  # noqa: E731
        return jax.vmap(fn)(xt_b, x0_b, alpha, sigma)[:, 0, :]
    if method == "symmetrised_mc":
        keys = jax.random.split(key, x_t.shape[0])

        def fn(k, xt, x0_, a, s):
            return symmetrised_target_mc(k, xt, x0_, a, s, num_samples=num_mc, group=group)

        return jax.vmap(fn)(keys, xt_b, x0_b, alpha, sigma)[:, 0, :]
    raise ValueError(f"Unknown toy_1d method {method!r}; expected one of {METHODS}.")


def loss_weight(kind: str, alpha: Array, sigma: Array) -> Array:
    """`w(t)`: `"snr"` = `alpha^2 / sigma^2` (reference code) or `"none"` = 1."""
    if kind == "snr":
        return alpha**2 / sigma**2
    if kind == "none":
        return jnp.ones_like(alpha)
    raise ValueError(f"Unknown loss_weighting {kind!r}; expected 'snr' or 'none'.")


def per_example_loss(
    apply: Callable, params, x_t: Array, t: Array, target: Array, weight: Array
) -> Array:
    """`w(t) ||D(x_t, t) - target||^2` per example (paper 000, eq. 3 / eq. 4), `[B]`."""
    pred = apply(params, x_t, t)
    return weight * jnp.sum((pred - jax.lax.stop_gradient(target)) ** 2, axis=-1)


# ----------------------------------------------------------------------------- sampling


def ddim_sample(apply: Callable, params, z: Array, grid: Grid, indices: np.ndarray) -> Array:
    """Deterministic DDIM with x0-prediction along `indices` (descending grid indices).

    One model call per index; between indices, `z_s = alpha_s x0_hat + sigma_s eps_hat`
    with `eps_hat = (z_t - alpha_t x0_hat) / sigma_t` (Song et al., 2020a, eq. 12 with
    eta = 0). The sample is the x0-prediction at the last index, as in the reference code.

    Args:
      apply: `apply(params, x [..., 1], t [...])`.
      params: model parameters.
      z: starting points `[n, 1]`.
      grid: the noise levels.
      indices: `[S]` descending grid indices, e.g. `sampling_indices(T, S)`.

    Returns:
      Samples `[n, 1]`.
    """
    from symdiff_jax.diffusion.samplers import ddim_step

    idx = jnp.asarray(indices)

    def step(z, pair):
        i_t, i_s = pair
        x0_hat = apply(params, z, grid.times[i_t])
        z = ddim_step(
            z, x0_hat, grid.alphas[i_s], grid.sigmas[i_s], grid.alphas[i_t], grid.sigmas[i_t]
        )
        return z, None

    z, _ = jax.lax.scan(step, z, (idx[:-1], idx[1:]))
    return apply(params, z, grid.times[idx[-1]])


def balanced_starts(key: Array, num_samples: int, dtype=jnp.float32) -> Array:
    """Reference evaluation starts: `num_samples // 2` from `+|N(0,1)|`, the rest from `-|N(0,1)|`."""
    k1, k2 = jax.random.split(key)
    half = num_samples // 2
    pos = jnp.abs(jax.random.normal(k1, (half, 1), dtype))
    neg = -jnp.abs(jax.random.normal(k2, (num_samples - half, 1), dtype))
    return jnp.concatenate([pos, neg], axis=0)


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
        w = loss_weight(config.loss_weighting, alpha, sigma)
        return jnp.mean(per_example_loss(apply, params, x_t, grid.times[i], target, w))

    def train(params, key, val_starts):
        def train_step(carry, step):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, jax.random.fold_in(key, step))
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

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


def make_eval_fn(config, apply: Callable, grid: Grid) -> Callable:
    """Builds `evaluate(params, starts) -> (samples [n], mean_abs [], w2 [])` for one seed."""
    idx = sampling_indices(grid.alphas.shape[0], int(config.num_sampling_steps))

    def evaluate(params, starts):
        x = ddim_sample(apply, params, starts, grid, idx)[:, 0]
        return x, mean_abs_to_nearest(x), w2_to_reflection_orbit(x)

    return evaluate


# ----------------------------------------------------------------------------- grad variance


def gradient_variance(
    apply: Callable,
    params,
    key: Array,
    grid: Grid,
    index,
    num_draws: int,
    methods: Sequence[str],
    loss_weighting: str = "snr",
    num_mc: int = 4,
) -> Array:
    """Trace of the covariance of the per-example loss gradient, one value per method.

    Draws `x_t = alpha_i + sigma_i eps` (x0 = +1) `num_draws` times at grid index `i` and,
    for every method's target, the per-example gradient `g_n = grad_theta w (D(x_t^n) -
    target_n)^2`. Returns `sum_p Var_n[g_n,p]` (unbiased over draws). All methods share the
    same draws of `x_t`, so their difference is the target's contribution alone. For an
    equivariant D, paper 000's Theorem 1 says the data target's value is the largest
    (the Monte Carlo target of Algorithm 1 is not covered by the theorem).

    Args:
      apply: `apply(params, x, t)`.
      params: parameters of one model.
      key: PRNG key.
      grid: the noise levels.
      index: grid index of the fixed time (may be traced).
      num_draws: number of draws of `x_t` (>= 2).
      methods: names in `METHODS`.
      loss_weighting: see `loss_weight`.
      num_mc: group samples of the Monte Carlo target.

    Returns:
      `[len(methods)]` variances.
    """
    k_eps, k_tgt = jax.random.split(key)
    alpha = jnp.broadcast_to(grid.alphas[index], (num_draws,))
    sigma = jnp.broadcast_to(grid.sigmas[index], (num_draws,))
    t = grid.times[index]
    x0 = jnp.ones((num_draws, 1), jnp.float32)
    x_t = alpha[:, None] * x0 + sigma[:, None] * jax.random.normal(k_eps, x0.shape)
    w = loss_weight(loss_weighting, grid.alphas[index], grid.sigmas[index])

    def one(p, xt, tgt):
        return per_example_loss(apply, p, xt[None], t, tgt[None], w)[0]

    out = []
    for m in methods:
        target = reflection_target(m, k_tgt, x_t, x0, alpha, sigma, num_mc)
        grads = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, x_t, target)
        flat = jnp.concatenate([g.reshape(num_draws, -1) for g in jax.tree.leaves(grads)], axis=1)
        out.append(jnp.sum(jnp.var(flat, axis=0, ddof=1)))
    return jnp.stack(out)


# ----------------------------------------------------------------------------- run


def _summary(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    return {
        "": float(np.median(v)),
        "_mean": float(np.mean(v)),
        "_std": float(np.std(v)),
        "_q25": float(np.quantile(v, 0.25)),
        "_q75": float(np.quantile(v, 0.75)),
    }


def _time_key(t: float) -> str:
    return f"t_{t:g}"


def run(config, workdir: str) -> dict[str, float]:
    """Trains every method and seed of `config`, evaluates, plots, and returns flat metrics.

    Each method trains all its seeds in one compiled function (`vmap` over seeds). Writes into `workdir`: `per_seed.json` (every seed's numbers),
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
    from symdiff_jax.experiments.io import write_json

    os.makedirs(workdir, exist_ok=True)
    methods = tuple(config.methods)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"Unknown toy_1d method {m!r} in config.methods; expected {METHODS}.")
    if config.num_seeds < 1:
        raise ValueError(f"num_seeds must be at least 1; got {config.num_seeds}.")
    grid = make_grid(config.schedule, config.num_timesteps, config.sigma_min, config.sigma_max)
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
            for suffix, value in _summary(r[name]).items():
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
                    config.loss_weighting,
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
        tk = _time_key(t)
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
    _plot_all(config, workdir, methods, results, gv_times, gv_model, gv_trained, gv_init)
    return metrics


# ----------------------------------------------------------------------------- plots


def _plot_all(config, workdir, methods, results, gv_times, gv_model, gv_trained, gv_init):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(METHODS, ("tab:red", "tab:blue", "tab:green"), strict=True))

    # Training loss (paper 000, Fig. 2): windowed mean per seed, then mean + 25-75% band.
    fig, ax = plt.subplots(figsize=(7, 4))
    window = max(1, int(config.loss_curve_window))
    for m in methods:
        losses = results[m]["losses"]  # [seeds, steps]
        n = losses.shape[1] // window * window
        win = losses[:, :n].reshape(losses.shape[0], -1, window).mean(-1)
        x = (np.arange(win.shape[1]) + 1) * window
        ax.plot(x, win.mean(0), color=colors[m], label=m)
        ax.fill_between(
            x, np.quantile(win, 0.25, 0), np.quantile(win, 0.75, 0), color=colors[m], alpha=0.25
        )
    ax.set(xlabel="training iteration", ylabel=f"training loss (mean over {window} steps)")
    ax.set_yscale("log")
    ax.set_title("1D reflection toy: training loss (mean over seeds, 25-75% band)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "loss_curves.png"), dpi=120)
    plt.close(fig)

    # Validation error along training.
    fig, ax = plt.subplots(figsize=(7, 4))
    for m in methods:
        errs = results[m]["val_errors"]
        x = (np.arange(errs.shape[1]) + 1) * int(config.eval_every)
        ax.plot(x, np.median(errs, 0), color=colors[m], label=f"{m} (median)")
        ax.fill_between(
            x, np.quantile(errs, 0.25, 0), np.quantile(errs, 0.75, 0), color=colors[m], alpha=0.2
        )
    ax.set(xlabel="training iteration", ylabel="validation mean |x - 1| (x > 0)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "val_error.png"), dpi=120)
    plt.close(fig)

    # Sample histograms: deviation x - sign(x) of the median seed (best checkpoint).
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m in methods:
        seed = int(np.argsort(results[m]["rmsd"])[len(results[m]["rmsd"]) // 2])
        x = results[m]["x"][seed]
        axes[0].hist(x, bins=200, histtype="step", color=colors[m], label=f"{m} (seed {seed})")
        dev = np.abs(x - np.sign(x))
        bins = np.logspace(np.log10(max(dev.min(), 1e-9)), np.log10(max(dev.max(), 1e-8)), 80)
        axes[1].hist(dev, bins=bins, histtype="step", color=colors[m], label=m)
    axes[0].set(xlabel="sample x", ylabel="count", yscale="log", title="samples (median seed)")
    axes[1].set(xlabel="|x - sign(x)|", ylabel="count", xscale="log", title="deviation")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "histograms.png"), dpi=120)
    plt.close(fig)

    # Per-seed metrics.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for a, name in zip(axes, ("rmsd", "w2"), strict=True):
        for j, m in enumerate(methods):
            for k, (suffix, marker) in enumerate((("", "o"), ("_final", "x"))):
                v = results[m][name + suffix]
                jitter = j + 0.15 * (k - 0.5) + np.linspace(-0.05, 0.05, len(v))
                a.scatter(jitter, v, marker=marker, color=colors[m], alpha=0.8)
            a.hlines(np.median(results[m][name]), j - 0.3, j + 0.3, color="k")
        a.set_xticks(range(len(methods)), methods)
        a.set(yscale="log", ylabel=name, title=f"{name} per seed (o best, x final; - median)")
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "per_seed_metrics.png"), dpi=120)
    plt.close(fig)

    # Gradient variance vs t.
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, m in enumerate(METHODS):
        ax.plot(gv_times, np.median(gv_trained[:, :, k], 0), "o-", color=colors[m], label=m)
        ax.plot(gv_times, np.median(gv_init[:, :, k], 0), "o--", color=colors[m], alpha=0.5)
    ax.set(xlabel="t", ylabel="tr Cov of per-example gradient", yscale="log")
    ax.set_title(f"gradient variance (solid: trained {gv_model}, dashed: init)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "grad_variance.png"), dpi=120)
    plt.close(fig)
