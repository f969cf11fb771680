"""Equivariant OT coupling against brute force over all pairings, permutations and O(2)."""

import itertools

import numpy as np

from symdiff_jax.flow_matching import equivariant_ot_coupling, permutation_alignment


def brute_force_alignment_cost(x0, x1, perms=None):
    """min over perms x O(2) of |g . x0 - x1|^2, rotations on a fine grid (both reflections)."""
    best = np.inf
    angles = np.linspace(0, 2 * np.pi, 3601)
    perms = itertools.permutations(range(x0.shape[0])) if perms is None else perms
    for perm in perms:
        xp = x0[list(perm)]
        for flip in (1.0, -1.0):
            xf = xp * np.array([1.0, flip])
            c, s = np.cos(angles), np.sin(angles)
            rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [A, 2, 2]
            moved = np.einsum("nk,alk->anl", xf, rot)
            best = min(best, np.min(np.sum((moved - x1) ** 2, axis=(-2, -1))))
    return best


def test_permutation_alignment_is_optimal():
    rng = np.random.default_rng(0)
    x0, x1 = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    p = permutation_alignment(x0, x1)
    best = min(np.sum((x0[list(q)] - x1) ** 2) for q in itertools.permutations(range(5)))
    np.testing.assert_allclose(np.sum((x0[p] - x1) ** 2), best)


def test_coupling_pairs_and_aligns():
    rng = np.random.default_rng(1)
    b = 4
    x0 = rng.normal(size=(b, 3, 2))
    x1 = 2.0 * rng.normal(size=(b, 3, 2))
    x0 -= x0.mean(1, keepdims=True)
    x1 -= x1.mean(1, keepdims=True)
    coupled, cost = equivariant_ot_coupling(x0, x1)
    brute = np.array(
        [[brute_force_alignment_cost(x0[i], x1[j]) for j in range(b)] for i in range(b)]
    )
    # Hungarian-then-Kabsch (Klein et al.) is an upper bound of the exact S_N x O(2)
    # alignment, and never worse than no alignment at all.
    assert np.all(cost >= brute * (1 - 1e-3) - 1e-6)
    assert np.all(cost <= np.sum((x0[:, None] - x1[None]) ** 2, axis=(-2, -1)) + 1e-9)
    # For the Hungarian permutation, the orthogonal map is optimal (Kabsch).
    for i in range(b):
        for j in range(b):
            p = permutation_alignment(x0[i], x1[j])
            assert cost[i, j] <= brute_force_alignment_cost(x0[i], x1[j], [p]) * (1 + 1e-5)
    # Optimal assignment of the batch for that cost, and the coupled pairs realise it.
    best = min(sum(cost[p[j], j] for j in range(b)) for p in itertools.permutations(range(b)))
    np.testing.assert_allclose(np.sum((coupled - x1) ** 2), best, rtol=1e-5)

    # Each coupled draw is an S_N x O(2) image of some prior draw: same pair distances.
    def dists(x):
        return np.sort(np.linalg.norm(x[:, None] - x[None], axis=-1).ravel())

    for j in range(b):
        assert min(np.abs(dists(coupled[j]) - dists(x0[i])).max() for i in range(b)) < 1e-5
