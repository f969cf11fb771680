"""Float64 numpy pieces of the brute-force references of the symmetrised-target tests."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def haar_rotations(n: int, improper: bool, seed: int) -> np.ndarray:
    """`[n, 3, 3]` Haar draws on SO(3) (scipy `Rotation.random`), each times a random
    sign `+-I` when `improper` (then Haar on O(3))."""
    R = Rotation.random(n, random_state=seed).as_matrix()
    if improper:
        R = R * np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, 1, 1))
    return R


def orbit_log_weights(x_t, y, alpha, sigma, Rf: np.ndarray) -> np.ndarray:
    """`-||x_t - alpha y R_k^T||^2 / (2 sigma^2)` for every flattened rotation `Rf [K, 9]`.

    The cross term is linear in `R_k`: `<x_t, y R_k^T> = <x_t^T y, R_k>`.
    """
    cross = Rf @ (x_t.T @ y).ravel()
    sq = (x_t**2).sum() + alpha**2 * (y**2).sum() - 2 * alpha * cross
    return -sq / (2 * sigma**2)
