"""Conditional probability paths of flow matching with a Gaussian prior on U.

Time runs from the prior (t = 0) to the data (t = 1), as in paper 002, appendix E.2. The
path is the optimal-transport path of Lipman et al. (2023), "Flow matching for generative
modeling", eq. 20-23: given a data point x1 and a prior draw x0 ~ N_U(0, I),

    x_t = s(t) x0 + t x1,   s(t) = 1 - (1 - sigma_min) t,
    u_t(x_t | x1) = (x1 - (1 - sigma_min) x_t) / s(t)    (= x1 - (1 - sigma_min) x0).

With sigma_min = 0 it is the linear interpolant `(1 - t) x0 + t x1` with velocity
`x1 - x0` (Klein et al. 2023, "Equivariant flow matching", eq. 7 with sigma = 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.diffusion.forward import project
from symdiff_jax.groups import com_free_normal


def path_std(t, sigma_min: float = 0.0):
    """`s(t) = 1 - (1 - sigma_min) t`, the prior's weight on the path (Lipman et al., eq. 20)."""
    return 1.0 - (1.0 - sigma_min) * t


def conditional_path(x0: jax.Array, x1: jax.Array, t, sigma_min: float = 0.0) -> jax.Array:
    """`x_t = s(t) x0 + t x1` (Lipman et al. 2023, eq. 22); `t` scalar or `[...]`.

    Args:
      x0: `[..., N, d]` prior draws (CoM-free).
      x1: `[..., N, d]` data (CoM-free).
      t: times in [0, 1].
      sigma_min: width of the path at t = 1.
    """
    t = jnp.broadcast_to(jnp.asarray(t, x1.dtype), x1.shape[:-2])[..., None, None]
    return path_std(t, sigma_min) * x0 + t * x1


def conditional_velocity(
    x_t: jax.Array,
    x1: jax.Array,
    t,
    sigma_min: float = 0.0,
    *,
    mask: jax.Array | None = None,
    position_dims: int | None = None,
) -> jax.Array:
    """`u_t(x_t | x1) = (x1 - (1 - sigma_min) x_t) / s(t)` (Lipman et al. 2023, eq. 21), on U.

    Defined for s(t) > 0 (t < 1 when sigma_min = 0). The result is projected like the
    state (`diffusion.forward.project`): the first `position_dims` columns (all when None)
    onto U, padded rows (`mask`) zero, so molecules `[x, h]` share the particles' path.
    """
    t = jnp.broadcast_to(jnp.asarray(t, x1.dtype), x1.shape[:-2])[..., None, None]
    u = (x1 - (1.0 - sigma_min) * x_t) / path_std(t, sigma_min)
    return project(u, mask, True, position_dims)


def prior_sample(key: jax.Array, shape, dtype=None) -> jax.Array:
    """A draw of the prior `N_U(0, I)`, shape `[..., N, d]` (Klein et al. 2023, section 4)."""
    return com_free_normal(key, shape, dtype=dtype)
