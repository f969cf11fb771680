"""E(3) diffusion of molecules `(x, h)`: training loss, NLL bound and sampler.

The molecule is `z = [x, h]` per atom: CoM-free positions `x [B, N, 3]` and scaled
features `h [B, N, F]` (one-hot types / 4, charge / 10 for QM9). A noise predictor
`denoise(key, x, h, t, mask) -> (eps_x, eps_h)` (see `symdiff_jax.models.denoisers`)
is trained with SymDiff's objective (paper 002, eq. 14; EDM's simplified loss),
evaluated with the variational bound (`symdiff_jax.diffusion.vlb`) and sampled with
paper 002's Algorithm 2 (ancestral steps, a fresh draw of the symmetrising rotation
at every step, then EDM's final `p(x, h | z_0)`).

Times are discrete, `t = i / T` with `i` uniform in `{0, ..., T}` for training (i = 0
is the `L_0` term) and in `{1, ..., T}` for the NLL estimator, as in EDM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from symdiff_jax.diffusion.forward import noise
from symdiff_jax.diffusion.samplers import (
    discretise_features,
    prior_sample,
    sample_ancestral,
    sample_ddim,
    sample_x_given_z0,
)
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.diffusion.vlb import (
    diffusion_weight,
    kl_prior,
    log_constants_x_given_z0,
    log_ph_given_z0,
    log_px_given_z0_without_constants,
)
from symdiff_jax.groups import rotate, sample_group
from symdiff_jax.targets import symmetrised_target_exact, target_in_form

Array = jax.Array
Denoiser = Callable[[Array, Array, Array, Array, Array], tuple[Array, Array]]

SAMPLERS = ("ancestral", "ddim")
X_TARGETS = ("data", "symmetrised")


class FeatureSpec(NamedTuple):
    """How the atom features `h` are laid out and scaled.

    Attributes:
      num_classes: one-hot atom types (QM9: H, C, N, O, F).
      include_charges: an atomic-number column follows the one-hot block.
      onehot_scale: `h_onehot = one_hot / onehot_scale` (EDM: 4).
      charge_scale: `h_charge = charge / charge_scale` (EDM: 10).
      n_dims: spatial dimension.
    """

    num_classes: int = 5
    include_charges: bool = True
    onehot_scale: float = 4.0
    charge_scale: float = 10.0
    n_dims: int = 3

    @property
    def num_features(self) -> int:
        return self.num_classes + int(self.include_charges)


QM9_FEATURES = FeatureSpec()


class Molecules(NamedTuple):
    """A padded batch of clean molecules as the diffusion code needs it.

    Attributes:
      x: `[B, N, 3]` CoM-free positions, zero on padded rows.
      h: `[B, N, F]` scaled features (zero on padded rows).
      one_hot: `[B, N, C]` unscaled one-hot atom types.
      charges: `[B, N]` integer charges (atomic numbers), or None.
      mask: `[B, N]` real atoms.
    """

    x: Array
    h: Array
    one_hot: Array
    charges: Array | None
    mask: Array


def molecules_from_batch(batch, spec: FeatureSpec = QM9_FEATURES) -> Molecules:
    """`Molecules` from a `symdiff_jax.data.batch_iterator` batch (positions, h, charges, mask)."""
    h = jnp.asarray(batch["h"])
    mask = jnp.asarray(batch["mask"])
    one_hot = jnp.round(h[..., : spec.num_classes] * spec.onehot_scale)
    charges = jnp.asarray(batch["charges"]) if spec.include_charges else None
    return Molecules(jnp.asarray(batch["positions"]), h, one_hot, charges, mask)


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


def own_orbit_eps_target(
    z_x: Array, x0: Array, alpha: Array, sigma: Array, mask: Array, group: str = "O3"
) -> Array:
    """The eps-form of the exact own-orbit symmetrised target over `group` (paper 000, eq. 6).

    `phi_G(z_x) = E[g . x0 | z_x]` over `g ~ Haar(group)` with the molecule's own `x0`
    as the bank (M = 1), computed exactly by `symmetrised_target_exact`, then written as
    the noise `(z_x - alpha phi_G) / sigma` an eps-network regresses to.

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

    phi = jax.vmap(one)(z_x, x0, alpha, sigma, mask)
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
    charge likelihoods of the feature part `z_h` of `z_0` (see `symdiff_jax.diffusion.vlb`).
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


def sample_molecules(
    denoise: Denoiser,
    key: Array,
    mask: Array,
    schedule: Schedule,
    *,
    num_steps: int = 1000,
    spec: FeatureSpec = QM9_FEATURES,
    sampler: str = "ancestral",
    dtype=jnp.float32,
) -> dict[str, Array]:
    """Samples molecules with the given atom masks (paper 002, Algorithm 2).

    `z_T ~ N_U(0, I)`; then `num_steps` ancestral steps (or deterministic DDIM steps),
    the denoiser receiving a fresh key, hence a fresh rotation draw, at every step; then
    EDM's final `x ~ p(x | z_0)` and features decoded from `z_0` (argmax type, rounded
    charge). One compiled `lax.scan` over the steps.

    Args:
      denoise: `(key, x, h, t, mask) -> (eps_x, eps_h)`.
      key: PRNG key.
      mask: `[B, N]` which atoms exist (sizes usually drawn from the train histogram).
      schedule: the noise schedule.
      num_steps: reverse steps (at most the schedule's `T`).
      spec: the feature layout.
      sampler: "ancestral" (Algorithm 2) or "ddim".
      dtype: float dtype of the sample.

    Returns:
      dict with `positions [B, N, 3]`, `one_hot [B, N, C]` int32, `charges [B, N]` int32
      (atomic numbers, zero if the spec has no charge column) and `mask [B, N]`.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}; got {sampler!r}.")
    d = spec.n_dims
    mask = jnp.asarray(mask, dtype)
    k_prior, k_steps, k_final = jax.random.split(key, 3)

    def model_fn(k, z, t):
        eps_x, eps_h = denoise(k, z[..., :d], z[..., d:], t, mask)
        return jnp.concatenate([eps_x, eps_h], -1)

    shape = mask.shape + (d + spec.num_features,)
    z = prior_sample(k_prior, shape, mask, position_dims=d, dtype=dtype)
    if sampler == "ancestral":
        z0 = sample_ancestral(
            k_steps, model_fn, z, schedule, num_steps, mask, prediction="eps", position_dims=d
        )
    else:
        z0 = sample_ddim(
            k_steps, model_fn, z, schedule, num_steps, mask, "eps", com_free=True, position_dims=d
        )
    xh = sample_x_given_z0(k_final, model_fn, z0, schedule, mask, prediction="eps", position_dims=d)
    one_hot, charges = discretise_features(
        z0[..., d:],
        spec.num_classes,
        mask,
        spec.include_charges,
        spec.onehot_scale,
        spec.charge_scale,
    )
    if charges is None:
        charges = jnp.zeros(mask.shape, jnp.int32)
    return {"positions": xh[..., :d], "one_hot": one_hot, "charges": charges, "mask": mask}
