"""Equivariant base cases gamma: kernels from a state to a random rotation.

`haar_gamma` ignores its input and draws a Haar rotation; `recursive_gamma`
is the learned, reparametrised kernel of SymDiff (paper 002), eq. 7 and
Algorithm 1, line 4: `R = R0 . f(R0^T . x, eta)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from symdiff_jax.groups import com_free_normal, qr_to_orthogonal, sample_group
from symdiff_jax.groups.names import check_group_dimension, check_group_name
from symdiff_jax.symmetrise.actions import get_positions, rotate_positions, transpose_rotation


def _float_dtype(x: jax.Array):
    dtype = jnp.result_type(x)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def haar_gamma(group: str = "O3") -> Callable[..., jax.Array]:
    """The Haar kernel `gamma(dg | x) = lambda(dg)`, an equivariant base case.

    Cornish (2024), Example 6.3, as used by SymDiff (paper 002), section 3.1
    (SymDiff-H): the rotation does not depend on the input, so it is invariant
    under any H acting on x, and left-invariance of Haar measure makes it
    G-equivariant.

    Args:
      group: "O3", "SO3", "O2" or "SO2".

    Returns:
      `gamma(key, x, *args, **kwargs) -> R [..., d, d]`: one Haar rotation per
      leading (batch) index of the positions `x [..., N, d]` (taken from a state
      as in `rotate_positions`), in `x`'s float dtype. Extra arguments are ignored.
    """
    check_group_name(group)

    def gamma(key: jax.Array, x: Any, *args: Any, **kwargs: Any) -> jax.Array:
        del args, kwargs
        positions = get_positions(x)
        check_group_dimension(group, jnp.shape(positions))
        return sample_group(key, group, jnp.shape(positions)[:-2], _float_dtype(positions))

    return gamma


def recursive_gamma(
    f: Callable[..., jax.Array], group: str = "O3", noise_dim: int = 3
) -> Callable[..., jax.Array]:
    """The recursive, reparametrised base case of SymDiff (paper 002), eq. 7.

    `gamma = sym_{gamma_0}(gamma_1)` with `gamma_0` the Haar measure and
    `gamma_1(dR | x)` the law of `qr_to_orthogonal(f(x, eta))`; sampling is
    Algorithm 1, line 4:

        R0 ~ Haar,   eta ~ N_U(0, I) in R^{N x noise_dim},
        R = R0 . qr_to_orthogonal(f(R0^T . x, eta, *args, **kwargs)).

    If `f` is S_N-invariant (jointly permuting the atoms of `x` and the rows of
    `eta` leaves it unchanged), then `gamma` is S_N-invariant and
    O(d)-equivariant in distribution, `R(g . x) ~ g R(x)`, whatever `f` does
    under rotations. R0 and eta do not depend on the parameters of `f`, so
    gradients flow to them through the QR map (reparametrisation).

    Args:
      f: `f(x_rotated, eta, *args, **kwargs) -> [..., d, d]` (or `[..., d*d]`):
        a raw, unconstrained matrix per system. `x_rotated` has the structure of
        the input state with its positions rotated by `R0^T`; `eta` is
        `[..., N, noise_dim]`.
      group: "O3" or "SO3" (also "O2", "SO2" for planar systems). For "SO3",
        R0 is Haar on SO(3) and the QR output is flipped into SO(3).
      noise_dim: the width `m_noise` of `eta` (SymDiff uses 3).

    Returns:
      `gamma(key, x, *args, **kwargs) -> R [..., d, d]`. All extra arguments go
      to `f`; a keyword `mask [..., N]` also puts `eta` on the CoM-free subspace
      of the real atoms (zero on padded rows).
    """
    check_group_name(group)
    if int(noise_dim) < 0:
        raise ValueError(f"noise_dim must be >= 0; got {noise_dim}.")
    special = group.startswith("SO")

    def gamma(key: jax.Array, x: Any, *args: Any, **kwargs: Any) -> jax.Array:
        positions = get_positions(x)
        dim = check_group_dimension(group, jnp.shape(positions))
        dtype = _float_dtype(positions)
        key_haar, key_noise = jax.random.split(key)
        r0 = sample_group(key_haar, group, jnp.shape(positions)[:-2], dtype)
        eta_shape = tuple(jnp.shape(positions)[:-1]) + (int(noise_dim),)
        eta = com_free_normal(key_noise, eta_shape, kwargs.get("mask"), dtype)
        # R0^T . x = x @ R0: the input seen from the frame R0.
        raw = f(rotate_positions(x, transpose_rotation(r0)), eta, *args, **kwargs)
        raw = jnp.asarray(raw)
        if raw.shape[-1:] == (dim * dim,):
            raw = raw.reshape(raw.shape[:-1] + (dim, dim))
        if raw.shape[-2:] != (dim, dim):
            raise ValueError(
                f"f must return a raw matrix [..., {dim}, {dim}] (or [..., {dim * dim}]) per "
                f"system; got shape {raw.shape}."
            )
        return jnp.matmul(r0, qr_to_orthogonal(raw.astype(dtype), special=special))

    return gamma
