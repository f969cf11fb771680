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
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from symdiff_jax.diffusion import get_schedule, noise, prior_sample, sample_ddim
from symdiff_jax.diffusion.schedules import Schedule, linear_sigma_schedule
from symdiff_jax.groups import remove_com
from symdiff_jax.metrics.alignment import aligned_rmsd, all_permutations, superimpose
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.targets import data_target_loss, symmetrised_target_exact, symmetrised_target_loss

METHODS = ("baseline", "symmetrised")


# ----------------------------------------------------------------------------- setup


def make_schedule(config) -> Schedule:
    """The noise schedule named by `config.diffusion.schedule`."""
    d = config.diffusion
    if d.schedule == "linear_sigma":
        return linear_sigma_schedule(d.sigma_min, d.sigma_max)
    return get_schedule(d.schedule)


def toy_data(points) -> jax.Array:
    """The training sample as a centred `[N, 2]` array."""
    x0 = jnp.asarray(np.asarray(points, np.float32))
    if x0.ndim != 2 or x0.shape[-1] != 2:
        raise ValueError(f"data.points must be a list of 2D points; got shape {x0.shape}.")
    return remove_com(x0)


def make_model(config, key: jax.Array) -> EGNN:
    """The EGNN denoiser: one constant node feature plus the time, x0-prediction."""
    m = config.model
    return EGNN(
        1,
        hidden=m.hidden,
        num_layers=m.num_layers,
        inv_sublayers=m.inv_sublayers,
        attention=m.attention,
        tanh=m.tanh,
        coords_range=m.coords_range,
        norm_constant=m.norm_constant,
        aggregation=m.aggregation,
        normalization_factor=m.normalization_factor,
        condition_time=True,
        rngs=nnx.Rngs(params=key),
    )


def make_denoiser(graphdef) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """`denoise(params, z [B, N, 2], t [B]) -> x0_hat [B, N, 2]`, CoM-free.

    The EGNN sees the noisy points, a constant feature per point and the time;
    its output positions, projected onto the CoM-free subspace, are the
    prediction of x0. E(2) x S_N-equivariant by construction.
    """

    def denoise(params, z, t):
        h = jnp.ones(z.shape[:-1] + (1,), z.dtype)
        x_out, _ = nnx.merge(graphdef, params)(z, h, None, t)
        return remove_com(x_out)

    return denoise


def make_permutations(config, num_points: int) -> np.ndarray:
    """The permutation group used in the symmetrised target and in the RMSD."""
    if config.permutations == "all":
        return all_permutations(num_points)
    if config.permutations == "none":
        return np.arange(num_points, dtype=np.int32)[None]
    raise ValueError(f"config.permutations must be 'all' or 'none'; got {config.permutations!r}.")


def loss_weight(config, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """w(t): the SNR `alpha^2 / sigma^2` (the reference's toys) or 1."""
    if config.diffusion.loss_weight == "snr":
        return (alpha / sigma) ** 2
    if config.diffusion.loss_weight == "none":
        return jnp.ones_like(alpha)
    raise ValueError(
        f"config.diffusion.loss_weight must be 'snr' or 'none'; got "
        f"{config.diffusion.loss_weight!r}."
    )


def symmetrised_targets(
    x_t: jax.Array, x0: jax.Array, alpha: jax.Array, sigma: jax.Array, group: str, permutations
) -> jax.Array:
    """phi_G for a batch `x_t [B, N, 2]` of one sample `x0 [N, 2]` (exact, O(2) x perms)."""
    fn = functools.partial(symmetrised_target_exact, group=group, permutations=permutations)
    return jax.vmap(lambda z, a, s: fn(z, x0[None], a, s))(x_t, alpha, sigma)


def per_example_loss(
    params,
    key: jax.Array,
    t: jax.Array,
    *,
    method: str,
    denoise: Callable,
    x0: jax.Array,
    schedule: Schedule,
    config,
    permutations,
) -> jax.Array:
    """The unreduced loss `[B]` of `method` at times `t [B]` with fresh noise.

    `z_t = alpha_t x0 + sigma_t eps` with CoM-free `eps`; the model predicts x0;
    `baseline` regresses on x0 (paper 000, eq. 3), `symmetrised` on phi_G (eq. 4).
    """
    alpha, sigma = schedule.alpha_sigma(t)
    x0_batch = jnp.broadcast_to(x0, t.shape + x0.shape)
    z, _ = noise(key, x0_batch, alpha, sigma, com_free=config.diffusion.com_free)
    pred = denoise(params, z, t)
    w = loss_weight(config, alpha, sigma)
    if method == "baseline":
        return data_target_loss(pred, x0_batch, weight=w)
    if method == "symmetrised":
        phi = symmetrised_targets(z, x0, alpha, sigma, config.group, permutations)
        return symmetrised_target_loss(pred, phi, weight=w)
    raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")


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
    loss_fn = functools.partial(
        per_example_loss,
        method=method,
        denoise=denoise,
        x0=x0,
        schedule=schedule,
        config=config,
        permutations=permutations,
    )

    def mean_loss(p, k):
        k_t, k_noise = jax.random.split(k)
        t = jax.random.uniform(k_t, (tr.batch_size,))
        return jnp.mean(loss_fn(p, k_noise, t))

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run_chunk(params, opt_state, steps):
        def body(carry, step):
            p, s = carry
            loss, grads = jax.value_and_grad(mean_loss)(p, jax.random.fold_in(key, step))
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

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


# ----------------------------------------------------------------------------- sampling


def sample(
    params, key: jax.Array, z_T: jax.Array, num_steps: int, *, denoise, schedule, config
) -> jax.Array:
    """DDIM (eta = 0) from `z_T [B, N, 2]` with `num_steps` steps; returns the final x0_hat."""

    def model_fn(_, z, t):
        return denoise(params, z, t)

    return sample_ddim(
        key,
        model_fn,
        z_T,
        schedule,
        num_steps,
        prediction="x0",
        com_free=config.diffusion.com_free,
        final_prediction=True,
    )


# ----------------------------------------------------------------------------- gradient variance


def make_gradient_variance(
    config, *, denoise, x0, schedule, permutations
) -> Callable[[Any, jax.Array, float], dict[str, float]]:
    """Builds `grad_var(params, key, t) -> {"baseline": v, "symmetrised": v}`.

    Paper 000, Theorem 1: for a G-equivariant network, the per-example gradient
    of the symmetrised-target loss has no larger variance than that of the data
    target loss. Both are evaluated on the same `config.grad_var.num_examples`
    noisy inputs `x_t` at time `t`, for the same parameters; the variance is the
    trace of the covariance matrix of the per-example gradients,
    `sum_params Var_examples[grad]` (unbiased).
    """
    n = config.grad_var.num_examples
    fns = {}
    for method in METHODS:
        loss_fn = functools.partial(
            per_example_loss,
            method=method,
            denoise=denoise,
            x0=x0,
            schedule=schedule,
            config=config,
            permutations=permutations,
        )

        def one(p, k, t, loss_fn=loss_fn):
            return loss_fn(p, k, t[None])[0]

        def trace_cov(params, key, t, one=one):
            keys = jax.random.split(key, n)
            ts = jnp.full((n,), t, jnp.float32)
            grads = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, keys, ts)
            flat = jnp.concatenate([g.reshape(n, -1) for g in jax.tree.leaves(grads)], axis=1)
            centred = flat - jnp.mean(flat, axis=0, keepdims=True)
            return jnp.sum(centred**2) / (n - 1)

        fns[method] = jax.jit(trace_cov)

    def grad_var(params, key, t):
        return {m: float(fn(params, key, t)) for m, fn in fns.items()}

    return grad_var


# ----------------------------------------------------------------------------- plots


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    width = max(1, min(width, len(values)))
    return np.convolve(values, np.ones(width) / width, mode="valid")


def plot_results(workdir: str, losses, samples, rmsd_curves, x0: np.ndarray, steps) -> None:
    """Writes `toy_2d.png` (the three panels of Fig. 3) and one file per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"baseline": "tab:blue", "symmetrised": "tab:red", "oracle": "tab:gray"}
    labels = {
        "baseline": "data target (eq. 3)",
        "symmetrised": "symmetrised target (eq. 4)",
        "oracle": "exact phi_G (no network)",
    }

    def loss_panel(ax):
        for m, curve in losses.items():
            first = curve[: min(1000, len(curve))]
            ax.plot(
                np.arange(len(first)), first, color=colours[m], alpha=0.7, lw=0.8, label=labels[m]
            )
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss")
        ax.set_title("(a) training loss, first 1k steps")
        ax.legend()

    def samples_panel(ax):
        learned = {m: v for m, v in samples.items() if m != "oracle"}
        for i, (m, pts) in enumerate(learned.items()):
            offset = np.array([0.0, 1.2 * (0.5 - i)]) * 2
            for p in x0:
                ax.add_patch(plt.Circle(p + offset, 0.1, color="tab:brown", fill=False, lw=1.2))
            flat = pts.reshape(-1, 2) + offset
            ax.scatter(flat[:, 0], flat[:, 1], s=3, color=colours[m], alpha=0.5, label=labels[m])
        ax.set_aspect("equal")
        ax.set_title("(b) aligned samples; circles: ground truth")
        ax.legend(loc="center", fontsize=7)

    def rmsd_panel(ax):
        for m, curve in rmsd_curves.items():
            style = "--" if m == "oracle" else "o-"
            ax.plot(steps, curve, style, color=colours[m], label=labels[m])
        ax.set_yscale("log")
        ax.set_xlabel("DDIM steps")
        ax.set_ylabel("aligned RMSD")
        ax.set_title("(c) RMSD vs sampling steps")
        ax.legend()

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, panel in zip(axes, (loss_panel, samples_panel, rmsd_panel), strict=True):
        panel(ax)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "toy_2d.png"), dpi=120)
    plt.close(fig)
    for name, panel in (
        ("training_loss.png", loss_panel),
        ("samples.png", samples_panel),
        ("rmsd_vs_steps.png", rmsd_panel),
    ):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        panel(ax)
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, name), dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    width = max(1, len(next(iter(losses.values()))) // 200)
    for m, curve in losses.items():
        ax.plot(_smooth(curve, width), color=colours[m], label=labels[m])
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training loss (moving average over {width})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "training_loss_full.png"), dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- run


def _time_key(t: float) -> str:
    return f"t_{t:g}"


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
    schedule = make_schedule(config)
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
                metrics[f"grad_var{prefix}/{m}/{_time_key(t)}"] = v
            ratio = var["baseline"] / max(var["symmetrised"], 1e-30)
            metrics[f"grad_var_ratio{prefix}/{_time_key(t)}"] = ratio

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
