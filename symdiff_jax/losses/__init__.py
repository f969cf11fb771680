"""Losses: per-example objectives of the diffusion models, unreduced.

training_losses   SymDiff's molecule objective (paper 002, eq. 14; EDM's simplified loss).
nll_terms         a one-sample estimate of the molecule VLB and its terms.
vlb               the VLB's terms (prior KL, diffusion weight, discretised L_0).
"""

from symdiff_jax.losses.molecules import (
    X_TARGETS,
    augment_rotation,
    nll_terms,
    own_orbit_eps_target,
    own_orbit_posterior_mean,
    reconstruction_loss,
    training_losses,
)
from symdiff_jax.losses.vlb import (
    diffusion_weight,
    kl_prior,
    log_constants_x_given_z0,
    log_ph_given_z0,
    log_px_given_z0_without_constants,
    subspace_dimension,
)

__all__ = [
    "X_TARGETS",
    "augment_rotation",
    "diffusion_weight",
    "kl_prior",
    "log_constants_x_given_z0",
    "log_ph_given_z0",
    "log_px_given_z0_without_constants",
    "nll_terms",
    "own_orbit_eps_target",
    "own_orbit_posterior_mean",
    "reconstruction_loss",
    "subspace_dimension",
    "training_losses",
]
