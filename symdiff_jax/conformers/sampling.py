"""Generating conformers of given molecular graphs: flow ODE or reverse diffusion, one scan.

Both samplers are one `lax.scan` over the steps (compiled once per batch shape), keys
folded by the step index, and return CoM-free coordinates `[B, N, 3]` (zero on padding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.conformers.graphs import ConformerGraph
from symdiff_jax.conformers.objectives import sample_prior
from symdiff_jax.conformers.prior import gaussian_prior
from symdiff_jax.diffusion.samplers import sample_ancestral, sample_x_given_z0
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.groups import remove_com

__all__ = ["sample_diffusion_conformers", "sample_flow_conformers"]


def sample_flow_conformers(
    net,
    key: jax.Array,
    graph: ConformerGraph,
    mask: jax.Array,
    *,
    num_steps: int = 50,
    prior: str = "harmonic",
    return_trajectory: bool = False,
):
    """Euler integration of the learned velocity from the prior (t = 0) to the data (t = 1).

    ETFlow's ODE sampler: `t_i = i / num_steps`, `x <- x + v(x, t_i) / num_steps` for
    `i = 0 .. num_steps - 1` (ETFlow uses 50 steps).

    Args:
      net: `(key, x, graph, t, mask) -> v`.
      key: PRNG key (prior draw, and each step's key for stochastic networks).
      graph: the molecular graphs `[B, ...]`.
      mask: `[B, N]` real atoms.
      num_steps: Euler steps.
      prior: "harmonic" or "gaussian", as in training.
      return_trajectory: also return `[num_steps + 1, B, N, 3]`.

    Returns:
      `x [B, N, 3]` (or `(x, trajectory)`).
    """
    k_prior, k_steps = jax.random.split(key)
    x = sample_prior(k_prior, prior, graph.bond_types, mask)
    batch = mask.shape[0]
    dt = 1.0 / num_steps

    def body(x, i):
        t = jnp.full((batch,), i, x.dtype) * dt
        v = net(jax.random.fold_in(k_steps, i), x, graph, t, mask)
        x = remove_com((x + dt * v) * mask[..., None], mask)
        return x, x if return_trajectory else None

    x_final, traj = jax.lax.scan(body, x, jnp.arange(num_steps))
    if return_trajectory:
        return x_final, jnp.concatenate([x[None], traj], axis=0)
    return x_final


def sample_diffusion_conformers(
    net,
    key: jax.Array,
    graph: ConformerGraph,
    mask: jax.Array,
    schedule: Schedule,
    *,
    num_steps: int = 500,
    prediction: str = "eps",
) -> jax.Array:
    """Ancestral sampling (paper 002, eq. 13) from `N_U(0, I)` at t = 1, then `p(x | z_0)`.

    Args:
      net: `(key, x, graph, t, mask) -> eps or x0`.
      key: PRNG key.
      graph, mask: as `sample_flow_conformers`.
      schedule: the training schedule.
      num_steps: reverse steps.
      prediction: what `net` predicts ("eps" or "x0").

    Returns:
      `x [B, N, 3]`, the mean of the final `p(x | z_0)`.
    """
    k_prior, k_steps, k_final = jax.random.split(key, 3)

    def model_fn(k, z, t):
        return net(k, z, graph, t, mask)

    z = gaussian_prior(k_prior, mask)
    z0 = sample_ancestral(k_steps, model_fn, z, schedule, num_steps, mask, prediction=prediction)
    return sample_x_given_z0(
        k_final, model_fn, z0, schedule, mask, prediction=prediction, add_noise=False
    )
