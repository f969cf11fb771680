"""Priors of a conformer generator: the harmonic prior of the bond graph, and Kabsch coupling.

Harmonic prior (EigenFold, Jing et al. 2023; used by ETFlow, Hassan et al. 2024): with the
graph Laplacian `L = D - A` of the bonds (every bond weight `alpha`, 1 in ETFlow), the
prior density is `p(x) ∝ exp(-x^T L x / 2)` on the centre-of-mass-free subspace, so bonded
atoms start close together. With `L = P diag(lambda) P^T`, a sample is
`x = P diag(1 / sqrt(lambda)) z` with `z ~ N(0, I)` and the zero mode (the centre of mass)
left out. A graph with several connected components (salts) has one zero mode per
component; each extra one gets unit variance here (the components' centres spread as a
standard normal), where ETFlow would stop with an error.

Padded atoms are given a large diagonal entry, so their modes separate from the real ones
and are dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.groups import remove_com, rotate
from symdiff_jax.metrics.alignment import kabsch

__all__ = ["align_prior", "gaussian_prior", "harmonic_modes", "harmonic_prior"]

_PAD_EIGENVALUE = 1e3
_ZERO = 1e-5


def harmonic_modes(bond_types: jax.Array, mask: jax.Array, alpha: float = 1.0):
    """`(P [..., N, N], std [..., N])` of the harmonic prior of each graph in a batch.

    Args:
      bond_types: `[..., N, N]` bond codes (0 = no bond; any other value is one bond).
      mask: `[..., N]` real atoms.
      alpha: bond weight of the Laplacian.

    Returns:
      Eigenvectors `P` (columns) and per-mode standard deviations `1 / sqrt(lambda)`: 0 for
      the zero mode of the whole molecule and for padded atoms, 1 for the extra zero modes
      of disconnected graphs.
    """
    m = mask.astype(jnp.float32)
    adjacency = alpha * (bond_types > 0).astype(jnp.float32) * m[..., :, None] * m[..., None, :]
    degree = adjacency.sum(-1)
    laplacian = (
        jnp.vectorize(jnp.diag, signature="(n)->(n,n)")(degree + _PAD_EIGENVALUE * (1.0 - m))
        - adjacency
    )
    lam, p = jnp.linalg.eigh(laplacian)
    real = lam < _PAD_EIGENVALUE / 2
    zero = lam < _ZERO
    # The first zero mode is the centre of mass; further ones are disconnected components.
    first = jnp.cumsum(zero, axis=-1) == 1
    std = jnp.where(zero, jnp.where(first, 0.0, 1.0), 1.0 / jnp.sqrt(jnp.maximum(lam, _ZERO)))
    return p, jnp.where(real, std, 0.0)


def harmonic_prior(
    key: jax.Array, bond_types: jax.Array, mask: jax.Array, alpha: float = 1.0
) -> jax.Array:
    """A draw `[..., N, 3]` from the harmonic prior of each bond graph (CoM-free, padded 0)."""
    p, std = harmonic_modes(bond_types, mask, alpha)
    z = jax.random.normal(key, mask.shape + (3,), jnp.float32)
    x = jnp.einsum("...ij,...j,...jd->...id", p, std, z)
    return remove_com(x * mask[..., None], mask)


def gaussian_prior(key: jax.Array, mask: jax.Array, dtype=jnp.float32) -> jax.Array:
    """A draw `[..., N, 3]` of `N(0, I)` on the CoM-free subspace of the real atoms.

    `N_U(0, I)` of SymDiff (paper 002, section 2.3), as `groups.com_free_normal` (equal up
    to float rounding): the draw is masked, then projected, `remove_com(z * mask, mask)`.
    """
    z = jax.random.normal(key, mask.shape + (3,), dtype)
    return remove_com(z * mask[..., None], mask)


def align_prior(x_prior: jax.Array, x_data: jax.Array, mask: jax.Array) -> jax.Array:
    """The prior sample rotated (proper Kabsch rotation) onto its data conformer.

    ETFlow's coupling: the pair `(x0, x1)` of conditional flow matching uses `R x0` with `R`
    the rotation that best superimposes `x0` on `x1`, shortening the paths. Both are
    centred; the result is CoM-free.
    """
    r = kabsch(x_data, x_prior, mask, allow_reflection=False, center=True)
    return remove_com(rotate(remove_com(x_prior, mask), r) * mask[..., None], mask)
