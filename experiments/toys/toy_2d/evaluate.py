"""Sampling the 2D toy with DDIM and the variance of its gradient estimators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from experiments.toys.toy_2d.model import METHODS, method_loss
from symdiff_jax.diffusion import sample_ddim


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
        loss_fn = method_loss(
            method,
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
