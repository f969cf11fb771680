"""The 1D reflection toy's denoiser, noise grid, targets and loss (paper 000, section 4.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

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
    raise ValueError(f"Unknown diffusion.loss_weight {kind!r}; expected 'snr' or 'none'.")


def per_example_loss(
    apply: Callable, params, x_t: Array, t: Array, target: Array, weight: Array
) -> Array:
    """`w(t) ||D(x_t, t) - target||^2` per example (paper 000, eq. 3 / eq. 4), `[B]`."""
    pred = apply(params, x_t, t)
    return weight * jnp.sum((pred - jax.lax.stop_gradient(target)) ** 2, axis=-1)
