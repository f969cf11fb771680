"""The SymDiff flow-matching objective (paper 002, appendix E.2, eq. 32) and its targets.

    L(theta) = E_{x1, t ~ U(0, 1), x_t ~ p_t(x_t | x1), R ~ gamma(. | x_t)}
               [ lambda(t) || R v_theta(R^T x_t, t) - target(x_t, x1, t) ||^2 ],

with the data target `u_t(x_t | x1)` (conditional flow matching) or paper 000's
symmetrised target, the same velocity with x1 replaced by the group-averaged posterior
mean phi_G(x_t) over x1's own O(d) orbit.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from symdiff_jax.flow_matching.paths import (
    conditional_path,
    conditional_velocity,
    path_std,
    prior_sample,
)
from symdiff_jax.score_matching import TARGETS, orthogonal_group, symmetrised_prediction
from symdiff_jax.targets import symmetrised_target_exact

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]
"""`velocity_fn(x [..., N, d], t [...]) -> [..., N, d]`, an S_N-equivariant network."""


def symmetrised_velocity_target(
    x_t: jax.Array,
    x1: jax.Array,
    t,
    sigma_min: float = 0.0,
    *,
    permutations: jax.Array | None = None,
) -> jax.Array:
    """Paper 000's symmetrised target in velocity form, `u_t(x_t | phi_G(x_t))`.

    On the path `x_t = s(t) x0 + t x1` with x0 ~ N_U(0, I) independent of x1, x_t given x1
    is `N_U(t x1, s(t)^2 I)`: a diffusion with alpha = t, sigma = s(t). `phi_G` is
    `symmetrised_target_exact` over x1's own orbit (bank of one) under O(d) (d = 2 or 3);
    `u_t` is linear in x1, so `u_t(x_t | phi_G)` is the orbit average of the data target
    weighted by its posterior (exact, no sampling; valid for the independent coupling,
    not for `equivariant_ot_coupling`).

    The permutation part: by default S_N is not averaged (the network is S_N-equivariant
    and S_13 cannot be enumerated); `permutations [P, N]`, a permutation group, makes the
    average run over O(d) x that group.

    Args:
      x_t: `[..., N, d]` points on the path.
      x1: `[..., N, d]` their data endpoints.
      t: scalar or `[...]` times with s(t) > 0 and t > 0.
      sigma_min: path width at t = 1.
      permutations: optional `[P, N]` permutation group.

    Returns:
      `[..., N, d]` target velocities (a constant: `stop_gradient`).
    """
    group = orthogonal_group(x_t)
    t = jnp.broadcast_to(jnp.asarray(t, x_t.dtype), x_t.shape[:-2])
    flat = (-1,) + x_t.shape[-2:]

    def one(xt, x, a):
        sigma = path_std(a, sigma_min)
        return symmetrised_target_exact(
            xt, x[None], a, sigma, group=group, permutations=permutations
        )

    phi = jax.vmap(one)(x_t.reshape(flat), x1.reshape(flat), t.reshape(-1))
    phi = jax.lax.stop_gradient(phi.reshape(x_t.shape))
    return conditional_velocity(x_t, phi, t, sigma_min)


def flow_matching_loss(
    key: jax.Array,
    velocity_fn: VelocityFn,
    x1: jax.Array,
    t: jax.Array,
    *,
    x0: jax.Array | None = None,
    sigma_min: float = 0.0,
    gamma: Callable | None = None,
    target: str = "data",
    weight: Callable | None = None,
    permutations: jax.Array | None = None,
) -> jax.Array:
    """Per-example SymDiff flow-matching loss, paper 002, appendix E.2, eq. 32.

    `lambda(t) || R v_theta(R^T x_t, t) - target ||^2` with `x_t = s(t) x0 + t x1` and
    `R ~ gamma(. | x_t)`; without `gamma` the plain conditional flow-matching loss.

    Args:
      key: PRNG key (prior draws when `x0` is None, and R).
      velocity_fn: the S_N-equivariant network `velocity_fn(x, t)`.
      x1: `[B, N, d]` CoM-free data.
      t: `[B]` times in [0, 1) (in (0, 1) for the symmetrised target).
      x0: `[B, N, d]` prior draws paired with x1 (e.g. by `equivariant_ot_coupling`);
        drawn independently from `N_U(0, I)` when None.
      sigma_min: path width at t = 1.
      gamma: `gamma(key, x, t) -> R [B, d, d]` (`haar_gamma`, `recursive_gamma`) or None.
      target: "data" (`conditional_velocity`) or "symmetrised" (`symmetrised_velocity_target`).
      weight: `lambda(t)`; default 1.
      permutations: permutation group of the symmetrised target.

    Returns:
      `[B]` unreduced losses.
    """
    if target not in TARGETS:
        raise ValueError(f"Unknown velocity target {target!r}; expected one of {TARGETS}.")
    key_prior, key_group = jax.random.split(key)
    if x0 is None:
        x0 = prior_sample(key_prior, x1.shape, x1.dtype)
    x_t = conditional_path(x0, x1, t, sigma_min)
    if target == "data":
        goal = conditional_velocity(x_t, x1, t, sigma_min)
    else:
        goal = symmetrised_velocity_target(x_t, x1, t, sigma_min, permutations=permutations)
    pred = symmetrised_prediction(key_group, velocity_fn, x_t, t, gamma)
    lam = 1.0 if weight is None else weight(t)
    return lam * jnp.sum((pred - goal) ** 2, axis=(-2, -1))
