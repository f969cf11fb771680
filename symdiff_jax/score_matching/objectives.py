"""The SymDiff score-matching objective (paper 002, appendix E.1, eq. 25) and its targets.

    L(theta) = E_{x0, t ~ U(0, 1), x_t ~ p(x_t | x0), R ~ gamma(. | x_t)}
               [ lambda(t) || R s_theta(R^T x_t, t) - target(x_t, x0, t) ||^2 ],

with the data target `grad log p(x_t | x0)` (denoising score matching, Vincent 2011) or
paper 000's symmetrised target, the same conditional score with x0 replaced by the
group-averaged posterior mean phi_G(x_t) over x0's own O(d) orbit.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from symdiff_jax.groups import com_free_normal, remove_com
from symdiff_jax.score_matching.sde import SDE, broadcast_time
from symdiff_jax.symmetrise import as_kernel, symmetrise
from symdiff_jax.targets import symmetrised_target_exact

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]
"""`score_fn(x [..., N, d], t [...]) -> [..., N, d]`, an S_N-equivariant network."""

TARGETS = ("data", "symmetrised")
_ORTHOGONAL = {2: "O2", 3: "O3"}


def perturb(key: jax.Array, x0: jax.Array, t, sde: SDE) -> jax.Array:
    """A draw of `x_t ~ p(x_t | x0) = N_U(m(t) x0, s(t)^2 I)` (SDE paper, eq. 29/30).

    Args:
      key: PRNG key.
      x0: `[..., N, d]` CoM-free clean samples.
      t: scalar or `[...]` times in (0, 1].
      sde: the forward SDE.
    """
    t = broadcast_time(t, x0)
    eps = com_free_normal(key, x0.shape, dtype=x0.dtype)
    return sde.mean_coefficient(t)[..., None, None] * x0 + sde.std(t)[..., None, None] * eps


def conditional_score(x_t: jax.Array, x0: jax.Array, t, sde: SDE) -> jax.Array:
    """`grad log p(x_t | x0) = -(x_t - m(t) x0) / s(t)^2` on U (SymDiff eq. 25; Vincent 2011).

    The gradient of the log density of `N_U` taken within U (both arguments CoM-free; the
    result is projected to U).
    """
    t = broadcast_time(t, x_t)
    m = sde.mean_coefficient(t)[..., None, None]
    s = sde.std(t)[..., None, None]
    return remove_com(-(x_t - m * x0) / (s * s))


def symmetrised_score_target(
    x_t: jax.Array,
    x0: jax.Array,
    t,
    sde: SDE,
    *,
    permutations: jax.Array | None = None,
) -> jax.Array:
    """Paper 000's symmetrised target in score form, `-(x_t - m(t) phi_G(x_t)) / s(t)^2`.

    `phi_G` is `symmetrised_target_exact` over x0's own orbit (bank of one) under O(d)
    (d = 2 or 3), with `alpha = m(t)` and `sigma = s(t)`: exact, no sampling. Given x_t,
    this is the conditional expectation of `grad log p(x_t | g . x0)` over g in the orbit
    weighted by its posterior, so for O(d)-invariant data it has the same minimiser as the
    data target and a lower variance (paper 000, Theorem 1).

    The permutation part: by default S_N is not averaged (the network is S_N-equivariant by
    construction and LJ13's S_13 cannot be enumerated). `permutations [P, N]` (a group,
    e.g. all 24 of S_4 for DW4) makes phi_G the average over O(d) x that group.

    Args:
      x_t: `[..., N, d]` noisy samples.
      x0: `[..., N, d]` their clean samples.
      t: scalar or `[...]`.
      sde: the forward SDE.
      permutations: optional `[P, N]` integer permutation group.

    Returns:
      `[..., N, d]` target scores (treated as constants: `stop_gradient`).
    """
    group = orthogonal_group(x_t)
    t = broadcast_time(t, x_t)
    m, s = sde.mean_coefficient(t), sde.std(t)
    batch = x_t.shape[:-2]
    flat = (-1,) + x_t.shape[-2:]

    def one(xt, x, a, b):
        return symmetrised_target_exact(xt, x[None], a, b, group=group, permutations=permutations)

    phi = jax.vmap(one)(x_t.reshape(flat), x0.reshape(flat), m.reshape(-1), s.reshape(-1))
    phi = jax.lax.stop_gradient(phi.reshape(batch + x_t.shape[-2:]))
    return conditional_score(x_t, phi, t, sde)


def score_matching_loss(
    key: jax.Array,
    score_fn: ScoreFn,
    x0: jax.Array,
    t: jax.Array,
    sde: SDE,
    *,
    gamma: Callable | None = None,
    target: str = "data",
    weight: Callable | None = None,
    permutations: jax.Array | None = None,
) -> jax.Array:
    """Per-example SymDiff score-matching loss, paper 002, appendix E.1, eq. 25.

    `lambda(t) || R s_theta(R^T x_t, t) - target ||^2` with `x_t ~ p(x_t | x0)` and
    `R ~ gamma(. | x_t)`; without `gamma` the plain loss
    `lambda(t) || s_theta(x_t, t) - target ||^2`.

    Args:
      key: PRNG key (forward noise and R).
      score_fn: the S_N-equivariant network `score_fn(x, t)`.
      x0: `[B, N, d]` CoM-free data.
      t: `[B]` times in (0, 1].
      sde: the forward SDE.
      gamma: `gamma(key, x, t) -> R [B, d, d]`, e.g. `haar_gamma("O3")` or a learned
        `recursive_gamma`; None for no symmetrisation.
      target: "data" (`conditional_score`) or "symmetrised" (`symmetrised_score_target`).
      weight: `lambda(t)`; default `s(t)^2` (Song et al. 2021, eq. 7 and section 3.3:
        lambda proportional to 1 / E||grad log p(x_t | x0)||^2).
      permutations: permutation group of the symmetrised target (see there).

    Returns:
      `[B]` unreduced losses.
    """
    if target not in TARGETS:
        raise ValueError(f"Unknown score target {target!r}; expected one of {TARGETS}.")
    key_noise, key_group = jax.random.split(key)
    x_t = perturb(key_noise, x0, t, sde)
    if target == "data":
        goal = conditional_score(x_t, x0, t, sde)
    else:
        goal = symmetrised_score_target(x_t, x0, t, sde, permutations=permutations)
    pred = symmetrised_prediction(key_group, score_fn, x_t, t, gamma)
    lam = sde.std(t) ** 2 if weight is None else weight(t)
    return lam * jnp.sum((pred - goal) ** 2, axis=(-2, -1))


def symmetrised_prediction(
    key: jax.Array, fn: ScoreFn, x: jax.Array, t: jax.Array, gamma: Callable | None
) -> jax.Array:
    """`R fn(R^T x, t)` with `R ~ gamma(. | x, t)`, or `fn(x, t)` when gamma is None.

    The network output of every SymDiff objective (paper 002, eq. 14, 25 and 32):
    `symmetrise(as_kernel(fn), gamma)`.
    """
    if gamma is None:
        return fn(x, t)
    return symmetrise(as_kernel(fn), gamma)(key, x, t)


def orthogonal_group(x: jax.Array) -> str:
    """The name of O(d) ("O2" or "O3") acting on points `x [..., N, d]`."""
    dim = x.shape[-1]
    if dim not in _ORTHOGONAL:
        raise ValueError(
            f"the symmetrised target averages over O(d) for d = 2 or 3; got points of "
            f"dimension {dim} (shape {x.shape})."
        )
    return _ORTHOGONAL[dim]
