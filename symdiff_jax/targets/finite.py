"""The symmetrised target for finite groups, by exact enumeration.

For a finite group G (reflections, point groups given as matrices, atom
permutations such as graph automorphisms, and products of these) the Haar
measure is uniform on the elements, so the integral of paper 000 (section 3,
"Practical implementation") is a finite sum:

    phi_G(x_t) = sum_{m, g} w(g, x0_m) g.x0_m / sum_{m, g} w(g, x0_m),
    log w(g, x0) = -||x_t - alpha g.x0||^2 / (2 sigma^2) (+ log prior weight of x0_m),

computed with a softmax over all |G| M terms, so it stays finite as sigma -> 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.targets.inputs import check_inputs, expand_bank, posterior_mean
from symdiff_jax.validation import (
    check_orthogonal,
    orthogonality_error,
    orthogonality_tolerance,
    poison,
)

__all__ = ["finite_group_target", "gaussian_log_kernel"]


def gaussian_log_kernel(x_t: jax.Array, gx0: jax.Array, alpha, sigma) -> jax.Array:
    """`log w = -||x_t - alpha g.x0||^2 / (2 sigma^2)`, paper 000, Algorithm 1, line 3.

    The difference is formed before squaring, so the value keeps its precision when
    x_t is close to alpha g.x0 (small sigma).

    Args:
      x_t: `[N, d]` noisy sample (padded rows zero).
      gx0: `[..., N, d]` transformed clean samples (padded rows zero).
      alpha, sigma: scalars.

    Returns:
      `[...]` log weights.
    """
    resid = x_t - alpha * gx0
    return -jnp.sum(resid * resid, axis=(-2, -1)) / (2.0 * sigma * sigma)


def finite_group_target(
    x_t: jax.Array,
    x0: jax.Array,
    alpha,
    sigma,
    *,
    matrices: jax.Array | None = None,
    mask: jax.Array | None = None,
    permutations: jax.Array | None = None,
    bank_log_weights: jax.Array | None = None,
) -> jax.Array:
    """phi_G for G = permutations x matrices, by enumerating all P K M terms.

    Paper 000, section 3 ("Practical implementation"), with the group integral
    replaced by the uniform average over the elements of a finite group.

    Args:
      x_t: `[N, d]` noisy sample.
      x0: `[M, N, d]` bank of clean samples.
      alpha, sigma: scalar signal and noise levels (sigma > 0).
      matrices: optional `[K, d, d]` elements of a finite matrix group (for example
        `[[[1.]], [[-1.]]]` for the reflection group Z2 on the line). None: {I}.
      mask: optional `[N]`, 1 for real atoms.
      permutations: optional `[P, N]` integer atom permutations forming a group
        (row p acts as `x -> x[p]`; must map real atoms to real atoms).
      bank_log_weights: optional `[M]` log prior weights of the bank.

    Returns:
      `[N, d]` phi_G, zero on padded rows.

    Raises:
      ValueError: as `symmetrised_target_exact` (shapes always; bad values when
        concrete). Under jit bad values give NaN; it never hangs.
    """
    inp = check_inputs(x_t, x0, alpha, sigma, mask, permutations, bank_log_weights)
    if matrices is not None:
        matrices = jnp.asarray(matrices, inp.x_t.dtype)
        d = inp.x_t.shape[-1]
        if matrices.ndim != 3 or matrices.shape[1:] != (d, d):
            raise ValueError(
                f"matrices must have shape [K, d, d] with d = {d}; got shape {matrices.shape}."
            )
        check_orthogonal(matrices, "matrices")
        valid = inp.valid & (
            orthogonality_error(matrices) <= orthogonality_tolerance(matrices.dtype)
        )
    else:
        valid = inp.valid
    bank, log_w = expand_bank(inp.x0, inp.log_weights, matrices, inp.permutations, inp.mask)
    logits = gaussian_log_kernel(inp.x_t, bank, inp.alpha, inp.sigma) + log_w
    return poison(posterior_mean(logits, bank, inp.mask), valid)
