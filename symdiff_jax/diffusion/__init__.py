"""Diffusion: noise schedules, prediction conversions, forward process, posteriors, samplers.

Variance-preserving, continuous time t in [0, 1] (DESIGN section 2):
`z_t = alpha_t z_0 + sigma_t eps`, `gamma(t) = -log SNR(t)`.
"""

from symdiff_jax.diffusion.forward import (
    noise,
    noise_features,
    posterior,
    posterior_from_gammas,
    project,
    sample_noise,
    transition_from_gammas,
)
from symdiff_jax.diffusion.parametrisation import (
    PREDICTIONS,
    eps_from_v,
    eps_from_x0,
    expand_to,
    to_eps,
    to_v,
    to_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from symdiff_jax.diffusion.samplers import (
    ancestral_mean_std,
    ancestral_step,
    ddim_step,
    discretise_features,
    euler_step,
    heun_step,
    prior_sample,
    sample_ancestral,
    sample_ddim,
    sample_ode,
    sample_x_given_z0,
)
from symdiff_jax.diffusion.schedules import (
    Schedule,
    clip_noise_schedule,
    cosine_schedule,
    discrete_schedule,
    get_schedule,
    linear_schedule,
    linear_sigma_schedule,
    polynomial_alphas2,
    polynomial_schedule,
)

__all__ = [
    # schedules
    "Schedule",
    "clip_noise_schedule",
    "cosine_schedule",
    "discrete_schedule",
    "get_schedule",
    "linear_schedule",
    "linear_sigma_schedule",
    "polynomial_alphas2",
    "polynomial_schedule",
    # parametrisation
    "PREDICTIONS",
    "eps_from_v",
    "eps_from_x0",
    "expand_to",
    "to_eps",
    "to_v",
    "to_x0",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
    # forward process
    "noise",
    "noise_features",
    "posterior",
    "posterior_from_gammas",
    "project",
    "sample_noise",
    "transition_from_gammas",
    # samplers
    "ancestral_mean_std",
    "ancestral_step",
    "ddim_step",
    "discretise_features",
    "euler_step",
    "heun_step",
    "prior_sample",
    "sample_ancestral",
    "sample_ddim",
    "sample_ode",
    "sample_x_given_z0",
]
