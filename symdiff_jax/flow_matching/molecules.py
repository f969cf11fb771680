"""Flow-matching SymDiff for molecules `[x, h]` (paper 002, appendix E.2, on EDM's features).

The molecule state is the diffusion code's `z = [x, h]` (`symdiff_jax.diffusion.molecules`):
CoM-free positions and scaled features (one-hot / 4, charge / 10 for QM9). The prior is
`N_U(0, I)` on positions and `N(0, I)` on features; the path is the optimal-transport path
of `symdiff_jax.flow_matching.paths`, from the prior (t = 0) to the data (t = 1). The network
is any molecule denoiser `denoise(key, x, h, tau, mask) -> (v_x, v_h)` (a `SymDiffDenoiser`
draws its rotation from `key`), read as a velocity and given the noise level
`tau = 1 - t`, so the diffusion models and their time embeddings serve unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.diffusion.forward import project, sample_noise
from symdiff_jax.diffusion.molecules import (
    QM9_FEATURES,
    Denoiser,
    FeatureSpec,
    Molecules,
    decode_molecules,
)
from symdiff_jax.flow_matching.paths import conditional_path, conditional_velocity, path_std
from symdiff_jax.flow_matching.sampler import euler_step
from symdiff_jax.losses.molecules import X_TARGETS, own_orbit_posterior_mean

Array = jax.Array


def noise_level(t: Array) -> Array:
    """The network's time input `tau = 1 - t`: 1 at the prior, 0 at the data (as diffusion)."""
    return 1.0 - t


def molecule_flow_losses(
    denoise: Denoiser,
    key: Array,
    mol: Molecules,
    *,
    spec: FeatureSpec = QM9_FEATURES,
    sigma_min: float = 0.0,
    x_target: str = "data",
    target_group: str = "O3",
    max_atoms: int | None = None,
    t: Array | None = None,
) -> dict[str, Array]:
    """SymDiff flow matching on molecules, per example (paper 002, appendix E.2, eq. 32).

    `t ~ U[0, 1)`, `z_0 ~ N_U(0, I)` (features: `N(0, I)`), `z_t = s(t) z_0 + t [x, h]`;
    the loss is `||v_hat - u_t(z_t | [x, h])||^2 / ((d + F) N_max)` with
    `v_hat = R v_theta(R^T z_t)` when the denoiser symmetrises (a fresh R per example).
    With `x_target="symmetrised"` the position part of the target is
    `u_t(z_t | phi_G(z_t))`, paper 000's own-orbit posterior mean (exact, over
    `target_group`) in place of `x` (the path given `x` is a diffusion with
    `alpha = t`, `sigma = s(t)`).

    Args:
      denoise: `(key, x, h, tau, mask) -> (v_x, v_h)`, `tau = noise_level(t)`.
      key: PRNG key (times, prior draws, the denoiser's randomness).
      mol: the clean batch.
      spec: the feature layout.
      sigma_min: width of the path at t = 1.
      x_target: "data" or "symmetrised".
      target_group: "O3" or "SO3", for `x_target="symmetrised"`.
      max_atoms: `N_max` of the normaliser (default: the padded width).
      t: `[B]` times in [0, 1), drawn from U[0, 1) when None.

    Returns:
      dict of `[B]` arrays: `loss` and `error` (the unnormalised squared error).
    """
    if x_target not in X_TARGETS:
        raise ValueError(f"x_target must be one of {X_TARGETS}; got {x_target!r}.")
    batch, n = mol.mask.shape
    d = spec.n_dims
    k_t, k_prior, k_model = jax.random.split(key, 3)
    xh = jnp.concatenate([mol.x, mol.h], -1)
    t = jax.random.uniform(k_t, (batch,), xh.dtype) if t is None else jnp.asarray(t, xh.dtype)
    z0 = sample_noise(k_prior, xh.shape, mol.mask, True, d, xh.dtype)
    z_t = conditional_path(z0, xh, t, sigma_min)
    if x_target == "symmetrised":
        phi = own_orbit_posterior_mean(
            z_t[..., :d], mol.x, t, path_std(t, sigma_min), mol.mask, target_group
        )
        xh = jnp.concatenate([phi, mol.h], -1)
    goal = conditional_velocity(z_t, xh, t, sigma_min, mask=mol.mask, position_dims=d)
    v_x, v_h = denoise(k_model, z_t[..., :d], z_t[..., d:], noise_level(t), mol.mask)
    m = mol.mask[..., None].astype(xh.dtype)
    error = jnp.sum((jnp.concatenate([v_x, v_h], -1) - goal) ** 2 * m, axis=(-2, -1))
    return {"loss": error / ((d + spec.num_features) * (max_atoms or n)), "error": error}


def sample_molecules_flow(
    denoise: Denoiser,
    key: Array,
    mask: Array,
    *,
    num_steps: int = 100,
    spec: FeatureSpec = QM9_FEATURES,
    dtype=jnp.float32,
) -> dict[str, Array]:
    """Samples molecules with the symmetrised Euler sampler (paper 002, appendix E.2, eq. 29).

    `z ~ N_U(0, I)` at t = 0, then `num_steps` Euler steps `z + dt v(z, t)` to t = 1, the
    denoiser receiving a fresh key (a fresh rotation) at every step, each state projected
    onto U; features are decoded from the final state as in EDM (argmax type, rounded charge).

    Args:
      denoise: `(key, x, h, tau, mask) -> (v_x, v_h)`.
      key: PRNG key.
      mask: `[B, N]` which atoms exist.
      num_steps: Euler steps, `dt = 1 / num_steps`.
      spec: the feature layout.
      dtype: float dtype of the sample.

    Returns:
      dict with `positions [B, N, 3]`, `one_hot [B, N, C]` int32, `charges [B, N]` int32
      and `mask [B, N]`, as `diffusion.molecules.sample_molecules`.
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}.")
    d = spec.n_dims
    mask = jnp.asarray(mask, dtype)
    k_prior, k_steps = jax.random.split(key)
    z = sample_noise(k_prior, mask.shape + (d + spec.num_features,), mask, True, d, dtype)
    dt = 1.0 / int(num_steps)

    def body(z, inputs):
        k, t = inputs

        def velocity(z_, t_):
            v_x, v_h = denoise(k, z_[..., :d], z_[..., d:], noise_level(t_), mask)
            return jnp.concatenate([v_x, v_h], -1)

        return project(euler_step(z, t, dt, velocity), mask, True, d), None

    times = dt * jnp.arange(int(num_steps), dtype=dtype)
    z, _ = jax.lax.scan(body, z, (jax.random.split(k_steps, int(num_steps)), times))
    return decode_molecules(z[..., :d], z[..., d:], mask, spec)
