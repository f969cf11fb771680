"""Training objectives of a graph-conditioned conformer generator, per example.

Two generators (paper 000, section 4.2, builds on both families):

- Conditional flow matching (ETFlow-style, Hassan et al. 2024): prior sample `x0` (the
  harmonic prior of the bond graph, Kabsch-rotated onto the data `x1`), path
  `x_t = t x1 + (1 - t) x0 + s sqrt(t (1 - t)) eps`, and the network regresses a velocity.
  Data target: ETFlow's `u = x1 - x0 + d/dt[s sqrt(t (1 - t))] eps`. Symmetrised target:
  the data endpoint `x1` is replaced by phi_G(x_t), the posterior mean of `x1` averaged
  over G = O(3) (or SO(3)) x Aut(G) (`conformer_symmetrised_target`, exact), turned into a
  velocity by `flow_velocity_target` (default form "two_sided", the form of paper 000's
  code).
- Gaussian diffusion (ETDiff-style): `x_t = alpha_t x0 + sigma_t eps` on the
  centre-of-mass-free subspace with EDM's schedule, the network predicts eps (or x0);
  the symmetrised target replaces x0 by phi_G(x_t) (paper 000, eq. 6 in eps form).

Every loss returns per-example values (`{"loss": [B], ...}`); the train step reduces.
The target is a regression target: it is wrapped in `stop_gradient`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from symdiff_jax.conformers.graphs import ConformerGraph
from symdiff_jax.conformers.prior import align_prior, gaussian_prior, harmonic_prior
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.groups import remove_com
from symdiff_jax.targets.conformer_target import (
    conformer_symmetrised_target,
    conformer_target_in_form,
    flow_path_coefficients,
    flow_velocity_target,
)

__all__ = [
    "PRIORS",
    "X_TARGETS",
    "batch_symmetrised_target",
    "diffusion_losses",
    "flow_interpolant",
    "flow_matching_losses",
    "masked_mse",
    "path_noise_derivative",
    "sample_prior",
]

PRIORS: tuple[str, ...] = ("harmonic", "gaussian")
X_TARGETS: tuple[str, ...] = ("data", "symmetrised")


def graph_of(batch) -> ConformerGraph:
    """The condition of a batch from `symdiff_jax.conformers.datasets.conformer_batch`."""
    return ConformerGraph(batch["atom_features"], batch["bond_types"])


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """`[B]` mean over the real atoms and the 3 coordinates of `(pred - target)^2`."""
    sq = jnp.sum((pred - target) ** 2, axis=-1) * mask
    return jnp.sum(sq, axis=-1) / (3.0 * jnp.maximum(jnp.sum(mask, axis=-1), 1.0))


def sample_prior(key: jax.Array, prior: str, bond_types: jax.Array, mask: jax.Array) -> jax.Array:
    """A CoM-free prior draw `[B, N, 3]`: "harmonic" (of the bond graph) or "gaussian"."""
    if prior == "harmonic":
        return harmonic_prior(key, bond_types, mask)
    if prior == "gaussian":
        return gaussian_prior(key, mask)
    raise ValueError(f"prior must be one of {PRIORS}; got {prior!r}.")


def _per_example(t: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.reshape(t, t.shape + (1,) * (x.ndim - t.ndim))


def flow_interpolant(x_prior, x_data, noise, t, path_sigma: float) -> jax.Array:
    """ETFlow's path `x_t = t x1 + (1 - t) x0 + s sqrt(t (1 - t)) eps` (data at t = 1).

    Args:
      x_prior, x_data, noise: `[B, N, 3]` (x0, x1, eps).
      t: `[B]` times in (0, 1).
      path_sigma: `s`.
    """
    tt = _per_example(t, x_data)
    return tt * x_data + (1.0 - tt) * x_prior + path_sigma * jnp.sqrt(tt * (1.0 - tt)) * noise


def path_noise_derivative(t, path_sigma: float) -> jax.Array:
    """`d/dt [s sqrt(t (1 - t))] = s (1 - 2t) / (2 sqrt(t (1 - t)))`, the noise term of u."""
    return path_sigma * (1.0 - 2.0 * t) / (2.0 * jnp.sqrt(t * (1.0 - t)))


def batch_symmetrised_target(batch, x_t, alpha, sigma, group: str) -> jax.Array:
    """phi_G(x_t) `[B, N, 3]` per example over O(3)/SO(3) x Aut(G) and the example's bank.

    Paper 000, section 3 (exact form, `conformer_symmetrised_target`), with each example's
    automorphism rows (`automorphisms [B, K, N]`, padding masked by `automorphism_mask`)
    and bank (`bank [B, Mb, N, 3]` with `bank_log_weights [B, Mb]`, -inf = padding).
    """
    fn = partial(conformer_symmetrised_target, group=group)

    def one(x, bank, log_w, perms, perm_mask, a, s, m):
        return fn(x, bank, a, s, perms, mask=m, bank_log_weights=log_w, automorphism_mask=perm_mask)

    phi = jax.vmap(one)(
        x_t,
        batch["bank"],
        batch["bank_log_weights"],
        batch["automorphisms"],
        batch["automorphism_mask"],
        jnp.broadcast_to(alpha, x_t.shape[:1]),
        jnp.broadcast_to(sigma, x_t.shape[:1]),
        batch["mask"],
    )
    return jax.lax.stop_gradient(phi)


def flow_matching_losses(
    net,
    key: jax.Array,
    batch,
    *,
    prior: str = "harmonic",
    path_sigma: float = 0.1,
    x_target: str = "data",
    group: str = "O3",
    velocity_form: str = "two_sided",
    t_range: tuple[float, float] = (1e-4, 0.9999),
) -> dict[str, jax.Array]:
    """Per-example conditional flow-matching loss (ETFlow; paper 000, section 4.2).

    Args:
      net: `(key, x, graph, t, mask) -> v [B, N, 3]`.
      key: PRNG key.
      batch: a `conformer_batch` of device arrays.
      prior: "harmonic" (Kabsch-aligned to the data) or "gaussian".
      path_sigma: `s` of the path noise (ETFlow: 0.1).
      x_target: "data" (ETFlow's `x1 - x0 + sigma'(t) eps`) or "symmetrised" (phi_G as the
        endpoint, then `flow_velocity_target(..., form=velocity_form)`).
      group: "O3" or "SO3", the rotations of the symmetrised target.
      velocity_form: "endpoint", "difference" or "two_sided" (`flow_velocity_target`).
      t_range: times are uniform on this interval (ETFlow: [1e-4, 0.9999]).

    Returns:
      `{"loss": [B], "t": [B], "target_norm": [B]}`.
    """
    if x_target not in X_TARGETS:
        raise ValueError(f"x_target must be one of {X_TARGETS}; got {x_target!r}.")
    mask = batch["mask"]
    k_prior, k_t, k_noise, k_net = jax.random.split(key, 4)
    x1 = remove_com(batch["positions"] * mask[..., None], mask)
    x0 = sample_prior(k_prior, prior, batch["bond_types"], mask)
    if prior == "harmonic":
        x0 = align_prior(x0, x1, mask)
    t = jax.random.uniform(k_t, mask.shape[:1], minval=t_range[0], maxval=t_range[1])
    eps = gaussian_prior(k_noise, mask)
    x_t = flow_interpolant(x0, x1, eps, t, path_sigma)
    noise_term = _per_example(path_noise_derivative(t, path_sigma), x1) * eps
    if x_target == "data":
        u = x1 - x0 + noise_term
    else:
        alpha, sigma = flow_path_coefficients(t, path_sigma)
        phi = batch_symmetrised_target(batch, x_t, alpha, sigma, group)
        u = flow_velocity_target(phi, x_t, t, x_prior=x0, form=velocity_form)
        if velocity_form == "difference":
            u = u + noise_term
    u = u * mask[..., None]
    v = net(k_net, x_t, graph_of(batch), t, mask)
    return {
        "loss": masked_mse(v, u, mask),
        "t": t,
        "target_norm": jnp.sqrt(masked_mse(u, jnp.zeros_like(u), mask)),
    }


def diffusion_losses(
    net,
    key: jax.Array,
    batch,
    schedule: Schedule,
    *,
    x_target: str = "data",
    group: str = "O3",
    prediction: str = "eps",
) -> dict[str, jax.Array]:
    """Per-example denoising loss of Gaussian diffusion on conformers (ETDiff-style).

    `x_t = alpha_t x0 + sigma_t eps` (eps CoM-free), t uniform on [0, 1], the network
    predicts `prediction` ("eps" or "x0") and regresses the data value or the symmetrised
    one (phi_G(x_t) for x0; `(x_t - alpha phi_G) / sigma` for eps, paper 000 eq. 6 in eps
    form).

    Returns:
      `{"loss": [B], "t": [B]}`.
    """
    if x_target not in X_TARGETS:
        raise ValueError(f"x_target must be one of {X_TARGETS}; got {x_target!r}.")
    if prediction not in ("eps", "x0"):
        raise ValueError(f"prediction must be 'eps' or 'x0'; got {prediction!r}.")
    mask = batch["mask"]
    k_t, k_noise, k_net = jax.random.split(key, 3)
    x0 = remove_com(batch["positions"] * mask[..., None], mask)
    t = jax.random.uniform(k_t, mask.shape[:1])
    alpha, sigma = schedule.alpha_sigma(t)
    eps = gaussian_prior(k_noise, mask)
    x_t = _per_example(alpha, x0) * x0 + _per_example(sigma, x0) * eps
    if x_target == "data":
        target = eps if prediction == "eps" else x0
    else:
        phi = batch_symmetrised_target(batch, x_t, alpha, sigma, group)
        target = conformer_target_in_form(phi, x_t, form=prediction, alpha=alpha, sigma=sigma)
    target = target * mask[..., None]
    pred = net(k_net, x_t, graph_of(batch), t, mask)
    return {"loss": masked_mse(pred, target, mask), "t": t}
