"""Terms of the variational bound of E(3) molecule diffusion, per example.

The negative log-likelihood of a molecule `(x, h)` with `N` atoms under a
variance-preserving diffusion with `T` steps is bounded by (Kingma et al., 2021;
EDM, Hoogeboom et al., 2022, section 3; SymDiff paper 002, section 2.2):

    -log p(x, h | N) <= KL(q(z_T | x, h) || p(z_T))                    (prior term)
                        + sum_{t=1}^{T} L_t                             (diffusion)
                        - log p(x, h | z_0)                             (L_0)

    L_t = 0.5 (SNR(s) / SNR(t) - 1) || eps - eps_hat ||^2,   s = t - 1,

estimated with one uniformly drawn `t`, `T * L_t`. Positions live on the CoM-free
subspace U of dimension `(N - 1) d`; features are discrete (one-hot atom types and
integer charges), scaled before diffusion and decoded at `t = 0` with a
discretised Gaussian likelihood.

Every function here returns unreduced per-example values `[B]` in nats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

# EDM adds this inside the log of the discretised Gaussian bin probabilities.
LOG_EPS = 1e-10


def _count(mask: jax.Array) -> jax.Array:
    return jnp.sum(mask.astype(jnp.result_type(float)), axis=-1)


def _sum_atoms(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Sum over `[..., N, k]` rows (k summed too) where `mask [..., N]` is set."""
    return jnp.sum(values * mask[..., None].astype(values.dtype), axis=(-2, -1))


def subspace_dimension(mask: jax.Array, n_dims: int = 3) -> jax.Array:
    """`(N - 1) d`: the dimension of the CoM-free position space of each example."""
    return (_count(mask) - 1.0) * n_dims


def diffusion_weight(gamma_s: jax.Array, gamma_t: jax.Array) -> jax.Array:
    """`SNR(s) / SNR(t) - 1 = expm1(gamma_t - gamma_s)`, the weight of `L_t` (VDM eq. 17).

    Kingma et al. (2021), eq. (17), in the `gamma = -log SNR` notation of EDM.
    """
    return jnp.expm1(gamma_t - gamma_s)


def kl_prior(
    x: jax.Array, h: jax.Array, mask: jax.Array, gamma_T: jax.Array, n_dims: int = 3
) -> jax.Array:
    """`KL(q(z_T | x, h) || N_U(0, I) x N(0, I))` per example (EDM, `kl_prior`).

    `q(z_T | x, h) = N(alpha_T [x, h], sigma_T^2 I)`. For a Gaussian of dimension `k`,
    `KL(N(mu, s^2 I) || N(0, I)) = k (-log s + s^2 / 2 - 1/2) + |mu|^2 / 2`, with
    `k = (N - 1) d` on positions (the CoM-free subspace) and `k = N F` on features.

    Args:
      x: `[B, N, d]` CoM-free clean positions (zero on padded rows).
      h: `[B, N, F]` scaled clean features.
      mask: `[B, N]`.
      gamma_T: `[B]` (or scalar) `gamma(1)`.
      n_dims: `d`.

    Returns:
      `[B]` KL in nats.
    """
    gamma_T = jnp.broadcast_to(gamma_T, x.shape[:1])
    log_sigma2 = -jax.nn.softplus(-gamma_T)  # log sigmoid(gamma)
    sigma2 = jax.nn.sigmoid(gamma_T)
    alpha2 = jax.nn.sigmoid(-gamma_T)
    per_dim = -0.5 * log_sigma2 + 0.5 * sigma2 - 0.5
    dims = subspace_dimension(mask, n_dims) + _count(mask) * h.shape[-1]
    mean_sq = alpha2 * (_sum_atoms(x**2, mask) + _sum_atoms(h**2, mask))
    return dims * per_dim + 0.5 * mean_sq


def log_constants_x_given_z0(mask: jax.Array, gamma_0: jax.Array, n_dims: int = 3) -> jax.Array:
    """Normalising constant of `p(x | z_0) = N_U(x_hat, (sigma_0 / alpha_0)^2 I)`, per example.

    EDM, `log_constants_p_x_given_z0`: `(N - 1) d (-gamma_0 / 2 - log(2 pi) / 2)`; the
    variance `exp(gamma_0) = sigma_0^2 / alpha_0^2` comes from writing the likelihood in
    the units of `z_0 / alpha_0`.
    """
    dof = subspace_dimension(mask, n_dims)
    return dof * (-0.5 * jnp.broadcast_to(gamma_0, dof.shape) - 0.5 * jnp.log(2.0 * jnp.pi))


def log_px_given_z0_without_constants(
    eps_x: jax.Array, eps_hat_x: jax.Array, mask: jax.Array
) -> jax.Array:
    """`-||eps_x - eps_hat_x||^2 / 2` over the real atoms (EDM's position part of `L_0`)."""
    return -0.5 * _sum_atoms((eps_x - eps_hat_x) ** 2, mask)


def _log_gaussian_bin(centred: jax.Array, sigma: jax.Array) -> jax.Array:
    """`log(Phi((c + 1/2) / s) - Phi((c - 1/2) / s) + LOG_EPS)`, the mass of a unit bin."""
    upper = jsp.ndtr((centred + 0.5) / sigma)
    lower = jsp.ndtr((centred - 0.5) / sigma)
    return jnp.log(upper - lower + LOG_EPS)


def log_ph_given_z0(
    one_hot: jax.Array,
    charges: jax.Array | None,
    z_h: jax.Array,
    gamma_0: jax.Array,
    mask: jax.Array,
    *,
    onehot_scale: float = 4.0,
    charge_scale: float = 10.0,
) -> jax.Array:
    """Discretised likelihood `log p(h | z_0)` of atom types and charges (EDM eq. 11-12).

    EDM (Hoogeboom et al., 2022, section 3.2 and `log_pxh_given_z0_without_constants`):
    back in unscaled units, each one-hot entry has a Gaussian of std
    `sigma_0 * onehot_scale` around `z_h * onehot_scale`; the type probability is the
    mass of the unit bin around 1, normalised over the classes. The integer charge gets
    the mass of the unit bin around the true charge under a Gaussian of std
    `sigma_0 * charge_scale`.

    Args:
      one_hot: `[B, N, C]` unscaled one-hot atom types (0/1).
      charges: `[B, N]` integer charges, or None (no charge feature).
      z_h: `[B, N, C (+1)]` the feature part of `z_0` (scaled units).
      gamma_0: `[B]` (or scalar) `gamma(0)`.
      mask: `[B, N]`.
      onehot_scale, charge_scale: the feature divisors (QM9: 4 and 10).

    Returns:
      `[B]` log-likelihood in nats.
    """
    num_classes = one_hot.shape[-1]
    sigma_0 = jnp.sqrt(jax.nn.sigmoid(jnp.broadcast_to(gamma_0, z_h.shape[:1])))[:, None, None]
    centred = z_h[..., :num_classes] * onehot_scale - 1.0
    log_mass = _log_gaussian_bin(centred, sigma_0 * onehot_scale)
    log_prob = log_mass - jsp.logsumexp(log_mass, axis=-1, keepdims=True)
    total = _sum_atoms(log_prob * one_hot.astype(log_prob.dtype), mask)
    if charges is not None:
        estimate = z_h[..., num_classes : num_classes + 1] * charge_scale
        centred = charges[..., None].astype(estimate.dtype) - estimate
        total = total + _sum_atoms(_log_gaussian_bin(centred, sigma_0 * charge_scale), mask)
    return total
