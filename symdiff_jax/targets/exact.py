"""The exact symmetrised target phi_G for O(3), SO(3), O(2), SO(2) and finite groups.

Paper 000 (section 3, "Practical implementation") writes the minimiser of the
symmetrised loss as

    phi_G(x_t) = sum_m int_G (g.x0_m) w(g, x0_m) dmu(g) / sum_m int_G w(g, x0_m) dmu(g),
    w(g, x0) = exp(-||x_t - alpha g.x0||^2 / (2 sigma^2)),

and estimates the group integral by Monte Carlo (their Algorithm 1). For rotations
the integral has a closed form: with `F = (alpha / sigma^2) x_t^T x0`,

    -||x_t - alpha R.x0||^2 / (2 sigma^2) = -D^2 / (2 sigma^2) + <F, R> - max_R' <F, R'>,

where `D^2 = min_R ||x_t - alpha R.x0||^2` is the Kabsch distance, so

    log int w dR      = -D^2 / (2 sigma^2) + log c(F) - (s1 + s2 + s3),
    int R.x0 w dR / int w dR = x0 @ E_F[R]^T,

with the matrix-Fisher normaliser c and mean E_F[R] (`matrix_fisher.py`). D^2 is
computed from the residual of the Kabsch-aligned x0, never as a difference of large
numbers, and the log normaliser is used in its scaled form, so the weights keep
their precision down to sigma ~ 1e-3 in float32. An O(d) integral is the equal
mixture of SO(d) on x0 and on x0 reflected, and atom permutations and finite
matrices are enumerated; all components are combined by one softmax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.targets.finite import gaussian_log_kernel
from symdiff_jax.targets.inputs import (
    check_inputs,
    expand_bank,
    parse_group,
    posterior_mean,
)
from symdiff_jax.targets.matrix_fisher import (
    bessel_ratio,
    proper_svd,
    tau_quadrature,
    von_mises_log_normaliser,
    von_mises_parameters,
)
from symdiff_jax.validation import poison

__all__ = ["so2_orbit_integral", "so3_orbit_integral", "symmetrised_target_exact"]


def so3_orbit_integral(x_t: jax.Array, x0: jax.Array, alpha, sigma) -> tuple[jax.Array, jax.Array]:
    """Log mass and mean of the SO(3) orbit integral of each clean sample.

    For each `x0_b`: `log_z_b = log int_SO(3) w(R, x0_b) dR` (Haar probability
    measure), computed as `-D_b^2 / (2 sigma^2) + log c(F_b) - (s1 + s2 + s3)`, and
    `mean_b = int (R.x0_b) w dR / int w dR = x0_b @ E_F[R]^T`, paper 000, section 3,
    with the matrix-Fisher closed form of the module docstring.

    Args:
      x_t: `[N, 3]` noisy sample (padded rows zero).
      x0: `[B, N, 3]` clean samples (padded rows zero).
      alpha, sigma: scalars (sigma > 0).

    Returns:
      `(log_z [B], mean [B, N, 3])`.
    """
    F = (alpha / (sigma * sigma)) * jnp.einsum("ni,bnj->bij", x_t, x0)
    U, s, V = proper_svd(F)
    kabsch = jnp.einsum("bij,bkj->bik", U, V)  # argmax_R <F, R>
    aligned = jnp.einsum("bnj,bij->bni", x0, kabsch)
    log_j, m = tau_quadrature(s)
    log_z = gaussian_log_kernel(x_t, aligned, alpha, sigma) + log_j
    mean_rotation = jnp.einsum("bij,bj,bkj->bik", U, m, V)
    mean = jnp.einsum("bnj,bij->bni", x0, mean_rotation)
    return log_z, mean


def so2_orbit_integral(x_t: jax.Array, x0: jax.Array, alpha, sigma) -> tuple[jax.Array, jax.Array]:
    """Log mass and mean of the SO(2) orbit integral of each clean sample (von Mises).

    `<F, R(theta)> = kappa cos(theta - mu)`, so `int w dtheta/2pi ∝ I0(kappa)` and the
    mean is `x0 @ ((I1/I0)(kappa) R(mu))^T`; paper 000, section 3, for G = SO(2).

    Args:
      x_t: `[N, 2]` noisy sample (padded rows zero).
      x0: `[B, N, 2]` clean samples (padded rows zero).
      alpha, sigma: scalars (sigma > 0).

    Returns:
      `(log_z [B], mean [B, N, 2])` with `log_z_b = log int w(R, x0_b) dtheta / (2 pi)`.
    """
    F = (alpha / (sigma * sigma)) * jnp.einsum("ni,bnj->bij", x_t, x0)
    kappa, cos_mu, sin_mu = von_mises_parameters(F)
    rot = jnp.stack([jnp.stack([cos_mu, -sin_mu], -1), jnp.stack([sin_mu, cos_mu], -1)], -2)
    aligned = jnp.einsum("bnj,bij->bni", x0, rot)
    log_i0e = von_mises_log_normaliser(kappa, scaled=True)
    log_z = gaussian_log_kernel(x_t, aligned, alpha, sigma) + log_i0e
    mean = bessel_ratio(kappa)[:, None, None] * aligned
    return log_z, mean


def symmetrised_target_exact(
    x_t: jax.Array,
    x0: jax.Array,
    alpha,
    sigma,
    *,
    group="O3",
    mask: jax.Array | None = None,
    permutations: jax.Array | None = None,
    bank_log_weights: jax.Array | None = None,
) -> jax.Array:
    """The symmetrised target phi_G(x_t), exactly (no sampling).

    Paper 000, section 3 ("Practical implementation"): the group-averaged posterior
    mean of x0 given x_t, over a bank of clean samples. Named rotation groups use
    the matrix-Fisher (SO(3)) or von Mises (SO(2)) closed form; finite groups and
    permutations are enumerated. Stays finite and accurate from sigma ~ 1e-3 to
    sigma = 1 in float32; as sigma -> 0 it tends to the Kabsch-aligned closest orbit
    point (best permutation, bank member and, for O(d), reflection).

    Pure and jit/vmap compatible: `group` must be static when it is a name (use
    `functools.partial` or `jax.jit(..., static_argnames="group")`); matrices,
    permutations, masks and weights may be traced arrays. For a batch, `jax.vmap`
    over x_t, x0, alpha, sigma and mask. The result is a regression target: wrap it
    in `jax.lax.stop_gradient` if it is computed inside a differentiated function.

    Args:
      x_t: `[N, d]` noisy sample, `x_t = alpha x0 + sigma eps`.
      x0: `[M, N, d]` bank of clean samples (M = 1: the sample's own orbit).
      alpha, sigma: scalar signal and noise levels, sigma > 0.
      group: "O3", "SO3" (d = 3), "O2", "SO2" (d = 2), "trivial" (any d), or a
        finite group as matrices `[K, d, d]`, e.g. `[[[1.]], [[-1.]]]` for Z2 on R.
      mask: optional `[N]`, 1 for real atoms; padded rows are ignored and returned 0.
      permutations: optional `[P, N]` integer atom permutations forming a group
        (for example all of S_k on k equivalent atoms, or graph automorphisms);
        the group becomes permutations x `group`. Must map real atoms to real atoms.
      bank_log_weights: optional `[M]` log prior weights of the bank members
        (e.g. Boltzmann weights of conformers); uniform when None.

    Returns:
      `[N, d]` phi_G.

    Raises:
      ValueError: wrong shapes, mask mismatch, unknown group name, or a group whose
        dimension does not match d; when called with concrete arrays also for NaN/Inf
        in x_t, x0 or alpha, sigma not > 0, a mask with values other than 0 and 1, a
        permutation row that is not a permutation of 0..N-1, or non-orthogonal group
        matrices. Under jit these raise nothing and the result is NaN; it never hangs.
    """
    inp = check_inputs(x_t, x0, alpha, sigma, mask, permutations, bank_log_weights)
    spec = parse_group(group, inp.x_t.shape[-1], inp.x_t.dtype)
    bank, log_w = expand_bank(inp.x0, inp.log_weights, spec.matrices, inp.permutations, inp.mask)
    if spec.continuous == "SO3":
        log_z, mean = so3_orbit_integral(inp.x_t, bank, inp.alpha, inp.sigma)
    elif spec.continuous == "SO2":
        log_z, mean = so2_orbit_integral(inp.x_t, bank, inp.alpha, inp.sigma)
    else:
        log_z, mean = gaussian_log_kernel(inp.x_t, bank, inp.alpha, inp.sigma), bank
    return poison(posterior_mean(log_z + log_w, mean, inp.mask), inp.valid & spec.valid)
