"""Stochastic symmetrisation of Markov kernels (SymDiff, paper 002).

`symmetrise(kernel, gamma)` turns an S_N-equivariant kernel into an
S_N x O(3)-equivariant one (Theorem 1); `haar_gamma` and `recursive_gamma`
are the equivariant base cases (Haar, and the learned eq. 7 construction).
"""

from symdiff_jax.symmetrise.actions import (
    get_positions,
    replace_positions,
    rotate_positions,
    rotation_action,
    transpose_rotation,
)
from symdiff_jax.symmetrise.gamma import haar_gamma, recursive_gamma
from symdiff_jax.symmetrise.symmetrise import as_kernel, symmetrise

__all__ = [
    "as_kernel",
    "get_positions",
    "haar_gamma",
    "recursive_gamma",
    "replace_positions",
    "rotate_positions",
    "rotation_action",
    "symmetrise",
    "transpose_rotation",
]
