"""E(3) diffusion of molecules `(x, h)`: the batch layout and the sampler.

The molecule is `z = [x, h]` per atom: CoM-free positions `x [B, N, 3]` and scaled
features `h [B, N, F]` (one-hot types / 4, charge / 10 for QM9). A noise predictor
`denoise(key, x, h, t, mask) -> (eps_x, eps_h)` (see `symdiff_jax.models.denoisers`)
is sampled with paper 002's Algorithm 2 (ancestral steps, a fresh draw of the
symmetrising rotation at every step, then EDM's final `p(x, h | z_0)`). Its training
objective and NLL bound are in `symdiff_jax.losses.molecules`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from symdiff_jax.diffusion.samplers import (
    discretise_features,
    prior_sample,
    sample_ancestral,
    sample_ddim,
    sample_x_given_z0,
)
from symdiff_jax.diffusion.schedules import Schedule

Array = jax.Array
Denoiser = Callable[[Array, Array, Array, Array, Array], tuple[Array, Array]]

SAMPLERS = ("ancestral", "ddim")


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
    return decode_molecules(xh[..., :d], z0[..., d:], mask, spec)


def decode_molecules(
    positions: Array, h: Array, mask: Array, spec: FeatureSpec = QM9_FEATURES
) -> dict[str, Array]:
    """A sampler's output dict: positions, and features decoded as EDM does (`discretise_features`).

    Args:
      positions: `[B, N, 3]` sampled positions.
      h: `[B, N, F]` sampled scaled features.
      mask: `[B, N]`.
      spec: the feature layout.

    Returns:
      dict with `positions`, `one_hot [B, N, C]` int32, `charges [B, N]` int32 (zero if the
      spec has no charge column) and `mask`.
    """
    one_hot, charges = discretise_features(
        h,
        spec.num_classes,
        mask,
        spec.include_charges,
        spec.onehot_scale,
        spec.charge_scale,
    )
    if charges is None:
        charges = jnp.zeros(mask.shape, jnp.int32)
    return {"positions": positions, "one_hot": one_hot, "charges": charges, "mask": mask}
