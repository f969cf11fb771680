"""SymDiff's training objective and the NLL bound of E(3) molecule diffusion, per example.

A noise predictor `denoise(key, x, h, t, mask) -> (eps_x, eps_h)` (see
`symdiff_jax.models.denoisers`) is trained with SymDiff's objective (paper 002, eq. 14;
EDM's simplified loss) and evaluated with the variational bound
(`symdiff_jax.losses.vlb`). The batch layout (`Molecules`, `FeatureSpec`) and the
sampler are in `symdiff_jax.diffusion.molecules`.

Times are discrete, `t = i / T` with `i` uniform in `{0, ..., T}` for training (i = 0
is the `L_0` term) and in `{1, ..., T}` for the NLL estimator, as in EDM.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.diffusion.forward import noise
from symdiff_jax.diffusion.molecules import QM9_FEATURES, Denoiser, FeatureSpec, Molecules
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.groups import rotate, sample_group
from symdiff_jax.losses.vlb import (
    diffusion_weight,
    kl_prior,
    log_constants_x_given_z0,
    log_ph_given_z0,
    log_px_given_z0_without_constants,
)
from symdiff_jax.targets import symmetrised_target_exact, target_in_form

Array = jax.Array

X_TARGETS = ("data", "symmetrised")


def _times(key: Array, batch: int, num_steps: int, lowest: int, dtype):
    i = jax.random.randint(key, (batch,), lowest, num_steps + 1)
    t = i.astype(dtype) / num_steps
    s = jnp.maximum(i - 1, 0).astype(dtype) / num_steps
    return i, s, t


def _squared_error(a: Array, b: Array, mask: Array) -> Array:
    return jnp.sum((a - b) ** 2 * mask[..., None].astype(a.dtype), axis=(-2, -1))


def augment_rotation(key: Array, x: Array, group: str = "O3") -> Array:
    """Data augmentation: each molecule rotated by its own Haar draw from `group`."""
    return rotate(x, sample_group(key, group, x.shape[:1], x.dtype))


def own_orbit_posterior_mean(
    z_x: Array, x0: Array, alpha: Array, sigma: Array, mask: Array, group: str = "O3"
) -> Array:
    """The exact own-orbit symmetrised target over `group` (paper 000, eq. 6), per molecule.

    `phi_G(z_x) = E[g . x0 | z_x]` over `g ~ Haar(group)` with the molecule's own `x0`
    as the bank (M = 1), for `z_x ~ N_U(alpha x0, sigma^2 I)`, computed exactly by
    `symmetrised_target_exact`.

    Args:
      z_x: `[B, N, 3]` noisy positions.
      x0: `[B, N, 3]` clean CoM-free positions.
      alpha, sigma: `[B]`.
      mask: `[B, N]`.
      group: "O3" or "SO3".

    Returns:
      `[B, N, 3]`, without gradient.
    """

    def one(z, x, a, s, m):
        return symmetrised_target_exact(z, x[None], a, s, group=group, mask=m)

    return jax.lax.stop_gradient(jax.vmap(one)(z_x, x0, alpha, sigma, mask))


def own_orbit_eps_target(
    z_x: Array, x0: Array, alpha: Array, sigma: Array, mask: Array, group: str = "O3"
) -> Array:
    """`own_orbit_posterior_mean` written as the noise `(z_x - alpha phi_G) / sigma`.

    The eps-form of paper 000's symmetrised target, which an eps-network regresses to.
    Arguments as `own_orbit_posterior_mean`; returns `[B, N, 3]` without gradient.
    """
    phi = own_orbit_posterior_mean(z_x, x0, alpha, sigma, mask, group)
    return jax.lax.stop_gradient(target_in_form(phi, z_x, alpha, sigma, "eps"))


def reconstruction_loss(
    mol: Molecules,
    z_h: Array,
    eps_x: Array,
    eps_x_hat: Array,
    gamma_0: Array,
    spec: FeatureSpec = QM9_FEATURES,
) -> Array:
    """`L_0 = -log p(x, h | z_0)` without the position constant, per example (EDM).

    The position part `-||eps_x - eps_hat_x||^2 / 2` plus the discretised type and
    charge likelihoods of the feature part `z_h` of `z_0` (see `symdiff_jax.losses.vlb`).
    """
    log_px = log_px_given_z0_without_constants(eps_x, eps_x_hat, mol.mask)
    log_ph = log_ph_given_z0(
        mol.one_hot,
        mol.charges,
        z_h,
        gamma_0,
        mol.mask,
        onehot_scale=spec.onehot_scale,
        charge_scale=spec.charge_scale,
    )
    return -(log_px + log_ph)


def training_losses(
    denoise: Denoiser,
    key: Array,
    mol: Molecules,
    schedule: Schedule,
    *,
    num_steps: int = 1000,
    spec: FeatureSpec = QM9_FEATURES,
    x_target: str = "data",
    target_group: str = "O3",
    augment_group: str | None = None,
    max_atoms: int | None = None,
) -> dict[str, Array]:
    """SymDiff's training objective per example (paper 002, eq. 14, with w(t) = 1).

    `t = i / T` with `i ~ U{0, ..., T}`; `z_t = alpha_t [x, h] + sigma_t eps` with
    `eps ~ N_U(0, I)`; for `i > 0` the loss is EDM's simplified
    `0.5 ||eps - eps_hat||^2 / ((d + F) N_max)`, for `i = 0` it is `-log p(x, h | z_0)`
    without constants (EDM), and the (parameter-free) prior KL is added. With a
    symmetrising denoiser, `eps_hat = R . eps_theta(R^T . z_t)` with a fresh `R` per
    example, so this is eq. 14.

    Args:
      denoise: `(key, x, h, t, mask) -> (eps_x, eps_h)`.
      key: PRNG key (times, noise, the denoiser's randomness, augmentation).
      mol: the clean batch.
      schedule: the noise schedule (EDM: `polynomial_schedule(1000)`).
      num_steps: `T`.
      spec: the feature layout.
      x_target: "data" (the noise that was added) or "symmetrised" (the eps-form of the
        exact own-orbit symmetrised target over `target_group`, paper 000; a target no
        published SymDiff uses).
      target_group: "O3" or "SO3", for `x_target="symmetrised"`.
      augment_group: rotate every clean molecule by a Haar draw from this group first
        (the DiT-Aug baseline), or None.
      max_atoms: `N_max` of the loss normaliser (default: the padded width `N`), so that
        batches padded to different sizes share one scale.

    Returns:
      dict of `[B]` arrays: `loss` (the objective) and `error` (the unnormalised
      squared error `||eps - eps_hat||^2`).
    """
    if x_target not in X_TARGETS:
        raise ValueError(f"x_target must be one of {X_TARGETS}; got {x_target!r}.")
    batch, n = mol.mask.shape
    d = spec.n_dims
    k_aug, k_t, k_eps, k_model = jax.random.split(key, 4)
    x = mol.x if augment_group is None else augment_rotation(k_aug, mol.x, augment_group)
    i, s, t = _times(k_t, batch, num_steps, 0, x.dtype)
    del s
    gamma_t = schedule.gamma(t)
    alpha_t, sigma_t = schedule.alpha_sigma(t)
    z, eps = noise(
        k_eps, jnp.concatenate([x, mol.h], -1), alpha_t, sigma_t, mol.mask, position_dims=d
    )
    eps_x_hat, eps_h_hat = denoise(k_model, z[..., :d], z[..., d:], t, mol.mask)
    eps_x = eps[..., :d]
    if x_target == "symmetrised":
        target_x = own_orbit_eps_target(z[..., :d], x, alpha_t, sigma_t, mol.mask, target_group)
    else:
        target_x = eps_x
    error = _squared_error(target_x, eps_x_hat, mol.mask) + _squared_error(
        eps[..., d:], eps_h_hat, mol.mask
    )
    l2 = 0.5 * error / ((d + spec.num_features) * (max_atoms or n))
    loss_0 = reconstruction_loss(mol, z[..., d:], eps_x, eps_x_hat, gamma_t, spec)
    kl = kl_prior(x, mol.h, mol.mask, schedule.gamma(jnp.ones_like(t)), d)
    return {"loss": jnp.where(i == 0, loss_0, l2) + kl, "error": error}


def nll_terms(
    denoise: Denoiser,
    key: Array,
    mol: Molecules,
    schedule: Schedule,
    *,
    num_steps: int = 1000,
    spec: FeatureSpec = QM9_FEATURES,
    log_prob_num_atoms: Array | None = None,
) -> dict[str, Array]:
    """A one-sample unbiased estimate of the VLB `-log p(x, h, N)` per example, in nats.

    EDM's evaluation estimator: `t = i / T`, `i ~ U{1, ..., T}`,
    `NLL = KL_prior + T L_t - log Z_x - log p(x, h | z_0) - log p(N)` with
    `L_t = 0.5 (SNR(s)/SNR(t) - 1) ||eps - eps_hat||^2` and `L_0` evaluated on a fresh
    `z_0`. Positions are not rescaled (scale 1), so no volume correction enters.

    Args:
      denoise, key, mol, schedule, num_steps, spec: as `training_losses`.
      log_prob_num_atoms: `[B]` `log p(N)` from the train-size histogram, or None to
        leave it out (then `nll` is `-log p(x, h | N)`).

    Returns:
      dict of `[B]` arrays: `nll` and its terms `kl_prior`, `diffusion` (`T L_t`),
      `log_z` (`-log Z_x`), `loss_0` and `log_pn`.
    """
    batch = mol.mask.shape[0]
    d = spec.n_dims
    k_t, k_eps, k_model, k_eps0, k_model0 = jax.random.split(key, 5)
    xh = jnp.concatenate([mol.x, mol.h], -1)
    _, s, t = _times(k_t, batch, num_steps, 1, xh.dtype)
    alpha_t, sigma_t = schedule.alpha_sigma(t)
    z, eps = noise(k_eps, xh, alpha_t, sigma_t, mol.mask, position_dims=d)
    eps_x_hat, eps_h_hat = denoise(k_model, z[..., :d], z[..., d:], t, mol.mask)
    error = _squared_error(eps[..., :d], eps_x_hat, mol.mask) + _squared_error(
        eps[..., d:], eps_h_hat, mol.mask
    )
    diffusion = num_steps * 0.5 * diffusion_weight(schedule.gamma(s), schedule.gamma(t)) * error

    t0 = jnp.zeros_like(t)
    gamma_0 = schedule.gamma(t0)
    alpha_0, sigma_0 = schedule.alpha_sigma(t0)
    z0, eps0 = noise(k_eps0, xh, alpha_0, sigma_0, mol.mask, position_dims=d)
    eps0_x_hat, _ = denoise(k_model0, z0[..., :d], z0[..., d:], t0, mol.mask)
    loss_0 = reconstruction_loss(mol, z0[..., d:], eps0[..., :d], eps0_x_hat, gamma_0, spec)
    log_z = -log_constants_x_given_z0(mol.mask, gamma_0, d)
    kl = kl_prior(mol.x, mol.h, mol.mask, schedule.gamma(jnp.ones_like(t)), d)
    log_pn = jnp.zeros_like(kl) if log_prob_num_atoms is None else log_prob_num_atoms
    nll = kl + diffusion + log_z + loss_0 - log_pn
    return {
        "nll": nll,
        "kl_prior": kl,
        "diffusion": diffusion,
        "log_z": log_z,
        "loss_0": loss_0,
        "log_pn": log_pn,
    }
