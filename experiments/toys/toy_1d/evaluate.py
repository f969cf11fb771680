"""Sampling and scoring the 1D reflection toy: DDIM, the final evaluation, gradient variance."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from experiments.toys.toy_1d.model import Grid, loss_weight, per_example_loss, reflection_target
from symdiff_jax.metrics.toy_1d import mean_abs_to_nearest, w2_to_reflection_orbit

Array = jax.Array


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
    loss_weight_kind: str = "snr",
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
      loss_weight_kind: `diffusion.loss_weight`, see `loss_weight`.
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
    w = loss_weight(loss_weight_kind, grid.alphas[index], grid.sigmas[index])

    def one(p, xt, tgt):
        return per_example_loss(apply, p, xt[None], t, tgt[None], w)[0]

    out = []
    for m in methods:
        target = reflection_target(m, k_tgt, x_t, x0, alpha, sigma, num_mc)
        grads = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, x_t, target)
        flat = jnp.concatenate([g.reshape(num_draws, -1) for g in jax.tree.leaves(grads)], axis=1)
        out.append(jnp.sum(jnp.var(flat, axis=0, ddof=1)))
    return jnp.stack(out)
