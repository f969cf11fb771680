"""The symmetrised target phi_G of paper 000 and the losses that use it.

phi_G(x_t) is the group-averaged posterior mean of the clean sample given the
noisy one, over a bank of clean samples (paper 000, section 3):

  symmetrised_target_exact   exact: matrix-Fisher / von Mises closed forms for
                             O(3), SO(3), O(2), SO(2); enumeration of finite groups
                             and atom permutations.
  symmetrised_target_mc      Monte Carlo over sampled group elements (Algorithm 1).
  symmetrised_target_loss    w(t) ||pred - phi_G||^2 in x0, eps or v form (eq. 4).
  data_target_loss           the same with the plain data target x0 (eq. 3).

The matrix-Fisher and von Mises pieces live in `matrix_fisher`.
"""

from symdiff_jax.targets.conformer_target import (
    chirality_group,
    conformer_symmetrised_target,
    conformer_target_in_form,
    conformer_target_mc,
    flow_velocity_target,
)
from symdiff_jax.targets.exact import (
    so2_orbit_integral,
    so3_orbit_integral,
    symmetrised_target_exact,
)
from symdiff_jax.targets.finite import finite_group_target, gaussian_log_kernel
from symdiff_jax.targets.losses import data_target_loss, symmetrised_target_loss, target_in_form
from symdiff_jax.targets.matrix_fisher import (
    expected_rotation,
    log_normaliser,
    matrix_fisher_log_normaliser,
    moments,
    proper_svd,
    von_mises_expected_rotation,
    von_mises_log_normaliser,
    von_mises_parameters,
)
from symdiff_jax.targets.monte_carlo import symmetrised_target_mc

__all__ = [
    "chirality_group",
    "conformer_symmetrised_target",
    "conformer_target_in_form",
    "conformer_target_mc",
    "flow_velocity_target",
    "data_target_loss",
    "expected_rotation",
    "finite_group_target",
    "gaussian_log_kernel",
    "log_normaliser",
    "matrix_fisher_log_normaliser",
    "moments",
    "proper_svd",
    "so2_orbit_integral",
    "so3_orbit_integral",
    "symmetrised_target_exact",
    "symmetrised_target_loss",
    "symmetrised_target_mc",
    "target_in_form",
    "von_mises_expected_rotation",
    "von_mises_log_normaliser",
    "von_mises_parameters",
]
