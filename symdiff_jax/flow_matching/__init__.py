"""Flow-matching SymDiff (paper 002, appendix E.2): paths, eq. 32, OT coupling, sampler, NLL."""

from symdiff_jax.flow_matching.coupling import equivariant_ot_coupling, permutation_alignment
from symdiff_jax.flow_matching.likelihood import (
    com_free_log_prior,
    exact_log_likelihood,
    projected_divergence,
)
from symdiff_jax.flow_matching.molecules import (
    molecule_flow_losses,
    noise_level,
    sample_molecules_flow,
)
from symdiff_jax.flow_matching.objectives import (
    VelocityFn,
    flow_matching_loss,
    symmetrised_velocity_target,
)
from symdiff_jax.flow_matching.paths import (
    conditional_path,
    conditional_velocity,
    path_std,
    prior_sample,
)
from symdiff_jax.flow_matching.sampler import euler_sample, euler_step

__all__ = [
    "VelocityFn",
    "com_free_log_prior",
    "conditional_path",
    "conditional_velocity",
    "equivariant_ot_coupling",
    "euler_sample",
    "euler_step",
    "exact_log_likelihood",
    "flow_matching_loss",
    "molecule_flow_losses",
    "noise_level",
    "path_std",
    "permutation_alignment",
    "prior_sample",
    "projected_divergence",
    "sample_molecules_flow",
    "symmetrised_velocity_target",
]
