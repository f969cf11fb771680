"""Monte Carlo estimate of the symmetrised target (paper 000, Algorithm 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.groups import sample_group
from symdiff_jax.targets.finite import gaussian_log_kernel
from symdiff_jax.targets.inputs import check_inputs, parse_group, posterior_mean
from symdiff_jax.validation import poison

__all__ = ["symmetrised_target_mc"]


def symmetrised_target_mc(
    key: jax.Array,
    x_t: jax.Array,
    x0: jax.Array,
    alpha,
    sigma,
    *,
    num_samples: int,
    group="O3",
    mask: jax.Array | None = None,
    permutations: jax.Array | None = None,
    bank_log_weights: jax.Array | None = None,
) -> jax.Array:
    """Self-normalised Monte Carlo estimate of phi_G(x_t), paper 000, Algorithm 1.

    Draws K = `num_samples` group elements g_k from the Haar measure (for a named
    rotation group via `symdiff_jax.groups.sample_group`; uniformly among the listed
    elements of a finite group; a uniform permutation from `permutations` with each
    g_k when given), forms all K M pairs with the bank,
    `R_mk = -||x_t - alpha g_k.x0_m||^2 / (2 sigma^2)` (+ log prior weight), and
    returns `sum_mk softmax(R)_mk g_k.x0_m`. The estimator is consistent with
    O(1/K) bias and O(1/sqrt(K)) standard deviation; `symmetrised_target_exact`
    gives the limit without sampling.

    Pure and jit/vmap compatible: `num_samples` (and `group` when it is a name) must
    be static. Memory is O(K M N d).

    Args:
      key: PRNG key.
      x_t: `[N, d]` noisy sample.
      x0: `[M, N, d]` bank of clean samples (M = 1: the sample's own orbit).
      alpha, sigma: scalar signal and noise levels, sigma > 0.
      num_samples: K, the number of group elements (shared by all bank members).
      group: "O3", "SO3", "O2", "SO2", "trivial" (then the estimate is exact and K
        is ignored), or a finite group as matrices `[K_G, d, d]`.
      mask: optional `[N]`, 1 for real atoms; padded rows are returned 0.
      permutations: optional `[P, N]` integer atom permutations (a group).
      bank_log_weights: optional `[M]` log prior weights of the bank.

    Returns:
      `[N, d]` estimate of phi_G.

    Raises:
      ValueError: as `symmetrised_target_exact` (shapes always; bad values when
        concrete). Under jit bad values give NaN; it never hangs.
    """
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(
            f"num_samples must be a positive Python int (static under jit); got {num_samples!r}."
        )
    inp = check_inputs(x_t, x0, alpha, sigma, mask, permutations, bank_log_weights)
    dtype = inp.x_t.dtype
    d = inp.x_t.shape[-1]
    spec = parse_group(group, d, dtype)
    key_g, key_p = jax.random.split(key)
    k = num_samples
    if spec.name in ("O3", "SO3", "O2", "SO2"):
        g = sample_group(key_g, spec.name, (k,), dtype)
    elif spec.matrices is not None:
        idx = jax.random.randint(key_g, (k,), 0, spec.matrices.shape[0])
        g = spec.matrices[idx]
    else:
        g = None
    bank = inp.x0[None]  # [1, M, N, d]
    if inp.permutations is not None:
        pidx = jax.random.randint(key_p, (k,), 0, inp.permutations.shape[0])
        perms = inp.permutations[pidx]  # [K, N]
        bank = jnp.take(inp.x0, perms, axis=1)  # [M, K, N, d]
        bank = jnp.swapaxes(bank, 0, 1) * inp.mask[:, None]  # [K, M, N, d]
    if g is not None and inp.permutations is None:
        bank = jnp.einsum("mnj,kij->kmni", inp.x0, g)  # [K, M, N, d]
    elif g is not None:
        bank = jnp.einsum("kmnj,kij->kmni", bank, g)
    logits = gaussian_log_kernel(inp.x_t, bank, inp.alpha, inp.sigma) + inp.log_weights
    flat = bank.reshape((-1,) + inp.x_t.shape)
    return poison(posterior_mean(logits.reshape(-1), flat, inp.mask), inp.valid & spec.valid)
