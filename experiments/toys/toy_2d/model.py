"""The 2D toy's data, EGNN denoiser, symmetrised targets and loss (paper 000, section 4.1)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from symdiff_jax.diffusion import noise
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.groups import remove_com
from symdiff_jax.metrics.alignment import all_permutations
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.models.factory import egnn_from_fields
from symdiff_jax.targets import data_target_loss, symmetrised_target_exact, symmetrised_target_loss

METHODS = ("baseline", "symmetrised")


def toy_data(points) -> jax.Array:
    """The training sample as a centred `[N, 2]` array."""
    x0 = jnp.asarray(np.asarray(points, np.float32))
    if x0.ndim != 2 or x0.shape[-1] != 2:
        raise ValueError(f"data.points must be a list of 2D points; got shape {x0.shape}.")
    return remove_com(x0)


def make_model(config, key: jax.Array) -> EGNN:
    """The EGNN denoiser: one constant node feature plus the time, x0-prediction."""
    return egnn_from_fields(config.model, 1, nnx.Rngs(params=key))


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


def method_loss(
    method: str, *, denoise: Callable, x0: jax.Array, schedule: Schedule, config, permutations
) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """`(params, key, t [B]) -> [B]`: `per_example_loss` of `method` with its setting bound."""
    return functools.partial(
        per_example_loss,
        method=method,
        denoise=denoise,
        x0=x0,
        schedule=schedule,
        config=config,
        permutations=permutations,
    )
