"""Equivariant optimal-transport coupling of prior and data within a batch.

Klein, Kraemer, Noe (2023), "Equivariant flow matching", section 4 ("equivariant OT flow
matching"): every prior draw x0_i is first aligned to every data point x1_j by the atom
permutation that minimises the summed squared distances (Hungarian algorithm) and then by
the optimal orthogonal map (Kabsch); the aligned squared distances form a B x B cost matrix,
and the batch is re-paired by the optimal assignment (Hungarian again). Runs in NumPy /
SciPy, outside `jit`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from symdiff_jax.metrics.alignment import kabsch


def permutation_alignment(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """The permutation `p [N]` minimising `sum_i |x0_{p[i]} - x1_i|^2` (Hungarian algorithm).

    Args:
      x0, x1: `[N, d]` point clouds.
    """
    cost = np.sum((x1[:, None, :] - x0[None, :, :]) ** 2, axis=-1)
    _, cols = linear_sum_assignment(cost)
    return cols


def equivariant_ot_coupling(
    x0: np.ndarray, x1: np.ndarray, *, reflections: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Re-pairs and aligns prior draws to data points (Klein et al. 2023, section 4).

    Args:
      x0: `[B, N, d]` CoM-free prior draws.
      x1: `[B, N, d]` CoM-free data.
      reflections: align with O(d) (True) or SO(d) (False).

    Returns:
      `(x0_coupled [B, N, d], cost [B, B])`: `x0_coupled[j]` is the prior draw assigned to
      `x1[j]`, permuted and rotated onto it; `cost[i, j]` the aligned squared distance of
      prior draw i to data point j. Use `x0_coupled` as `x0=` of `flow_matching_loss`.
    """
    x0 = np.asarray(x0, np.float64)
    x1 = np.asarray(x1, np.float64)
    b = x0.shape[0]
    permuted = np.empty((b, b) + x0.shape[1:])
    for i in range(b):
        for j in range(b):
            permuted[i, j] = x0[i][permutation_alignment(x0[i], x1[j])]
    targets = np.broadcast_to(x1[None], permuted.shape)
    rotations = kabsch(
        jnp.asarray(targets), jnp.asarray(permuted), allow_reflection=reflections, center=False
    )
    rotations = np.asarray(rotations)
    aligned = np.einsum("ijnk,ijlk->ijnl", permuted, rotations)
    cost = np.sum((aligned - targets) ** 2, axis=(-2, -1))
    rows, cols = linear_sum_assignment(cost)
    coupled = np.empty_like(x1)
    coupled[cols] = aligned[rows, cols]
    return coupled.astype(np.float32), cost
