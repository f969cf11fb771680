"""Kabsch alignment and aligned RMSD against scipy and brute force."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from symdiff_jax.metrics.alignment import (
    aligned_rmsd,
    all_permutations,
    kabsch,
    kabsch_rmsd,
    rmsd,
    superimpose,
)


def test_kabsch_matches_scipy_align_vectors(x64):
    """No centring, proper rotations: scipy's Rotation.align_vectors solves the same problem."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.normal(size=(7, 3))
        x = y @ Rotation.random(random_state=rng).as_matrix().T + 0.3 * rng.normal(size=(7, 3))
        ref, _ = Rotation.align_vectors(x, y)
        r = np.asarray(kabsch(jnp.asarray(x), jnp.asarray(y), center=False))
        np.testing.assert_allclose(r, ref.as_matrix(), atol=1e-8)
        assert np.isclose(np.linalg.det(r), 1.0)


def test_kabsch_batched_matches_loop(x64):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 5, 3))
    r = np.asarray(kabsch(jnp.asarray(x), jnp.asarray(y)))
    for b in range(4):
        xc, yc = x[b] - x[b].mean(0), y[b] - y[b].mean(0)
        ref, _ = Rotation.align_vectors(xc, yc)
        np.testing.assert_allclose(r[b], ref.as_matrix(), atol=1e-8)


def _brute_force_2d(x, y, reflections):
    """min over a fine angle grid (refined by golden search) of the centred 2D RMSD."""
    x, y = x - x.mean(0), y - y.mean(0)
    best = np.inf
    flips = [np.eye(2), np.diag([1.0, -1.0])] if reflections else [np.eye(2)]
    for f in flips:
        yf = y @ f.T

        def value(a, yf=yf):
            r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            return np.sqrt(np.mean(np.sum((x - yf @ r.T) ** 2, -1)))

        grid = np.linspace(0, 2 * np.pi, 4001)
        a0 = grid[np.argmin([value(a) for a in grid])]
        lo, hi = a0 - 2e-3, a0 + 2e-3
        for _ in range(60):
            m1, m2 = lo + (hi - lo) * 0.382, lo + (hi - lo) * 0.618
            lo, hi = (lo, m2) if value(m1) < value(m2) else (m1, hi)
        best = min(best, value(0.5 * (lo + hi)))
    return best


@pytest.mark.parametrize("reflections", [False, True])
def test_kabsch_rmsd_2d_matches_brute_force(x64, reflections):
    rng = np.random.default_rng(2)
    for _ in range(4):
        x, y = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
        got = float(kabsch_rmsd(jnp.asarray(x), jnp.asarray(y), allow_reflection=reflections))
        assert got == pytest.approx(_brute_force_2d(x, y, reflections), abs=1e-9)


def test_reflection_only_helps_when_allowed(x64):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 3))
    y = x @ np.diag([1.0, 1.0, -1.0]) @ Rotation.random(random_state=rng).as_matrix().T
    proper = float(kabsch_rmsd(jnp.asarray(x), jnp.asarray(y), allow_reflection=False))
    improper = float(kabsch_rmsd(jnp.asarray(x), jnp.asarray(y), allow_reflection=True))
    assert improper < 1e-10
    assert proper > 0.1


def _brute_aligned_rmsd_3d(x, y):
    """Loop over all permutations with scipy's proper Kabsch on centred clouds."""
    x = x - x.mean(0)
    best = np.inf
    for p in itertools.permutations(range(len(x))):
        yp = y[list(p)] - y[list(p)].mean(0)
        rot, _ = Rotation.align_vectors(x, yp)
        best = min(best, np.sqrt(np.mean(np.sum((x - rot.apply(yp)) ** 2, -1))))
    return best


def test_aligned_rmsd_matches_brute_force_over_permutations(x64):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5, 3))
    y = rng.normal(size=(5, 3))
    got = np.asarray(aligned_rmsd(jnp.asarray(x), jnp.asarray(y), allow_reflection=False))
    ref = np.array([_brute_aligned_rmsd_3d(x[b], y) for b in range(3)])
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_aligned_rmsd_is_zero_on_the_orbit(x64):
    """A rotated, reflected, translated and permuted copy has RMSD 0; a perturbed one does not."""
    rng = np.random.default_rng(5)
    y = np.array([[-1.0, 0.0], [-0.5, 0.0], [0.5, 0.0], [1.0, 0.0]])
    a = 1.234
    r = np.array([[np.cos(a), np.sin(a)], [np.sin(a), -np.cos(a)]])  # det -1
    x = (y @ r.T + np.array([2.0, -1.0]))[rng.permutation(4)]
    assert float(aligned_rmsd(jnp.asarray(x), jnp.asarray(y))) < 1e-10
    x_bad = x + np.array([[0.1, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert float(aligned_rmsd(jnp.asarray(x_bad), jnp.asarray(y))) > 1e-3
    # Without permutations (identity only), the shuffled copy is not aligned.
    ident = np.arange(4)[None]
    assert float(aligned_rmsd(jnp.asarray(x), jnp.asarray(y), permutations=ident)) > 0.1


@pytest.mark.allow_nonfinite
def test_aligned_rmsd_with_mask_ignores_padding(x64):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ref = float(aligned_rmsd(jnp.asarray(x), jnp.asarray(y)))
    xp = np.concatenate([x[:2], 9 * rng.normal(size=(2, 3)), x[2:]])
    yp = np.concatenate([y[:2], -9 * rng.normal(size=(2, 3)), y[2:]])
    mask = np.array([1, 1, 0, 0, 1, 1.0])
    got = float(aligned_rmsd(jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(mask)))
    assert got == pytest.approx(ref, abs=1e-10)


def test_rmsd_definition(x64):
    x = np.zeros((3, 2))
    y = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    assert float(rmsd(jnp.asarray(x), jnp.asarray(y))) == pytest.approx(5.0 / np.sqrt(3))


def test_float32_jit_and_batch():
    rng = np.random.default_rng(7)
    y = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(50, 4, 2)), jnp.float32)
    got = jax.jit(aligned_rmsd)(x, y)
    assert got.shape == (50,) and got.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(got)))


def test_errors():
    assert all_permutations(4).shape == (24, 4)
    with pytest.raises(ValueError, match="permutations"):
        all_permutations(9)
    with pytest.raises(ValueError, match="permutations"):
        aligned_rmsd(jnp.zeros((4, 2)), jnp.zeros((4, 2)), permutations=jnp.zeros((3, 5), int))
    with pytest.raises(ValueError, match="same number of points"):
        kabsch(jnp.zeros((4, 2)), jnp.zeros((5, 2)))


def test_superimpose_moves_onto_the_reference(x64):
    """superimpose returns points at the reported RMSD from the reference, equal to aligned_rmsd."""
    rng = np.random.default_rng(8)
    y = np.array([[-1.0, 0.0], [-0.5, 0.0], [0.5, 0.0], [1.0, 0.0]])
    x = rng.normal(size=(6, 4, 2))
    moved, value = superimpose(jnp.asarray(x), jnp.asarray(y))
    direct = np.sqrt(np.mean(np.sum((np.asarray(moved) - y) ** 2, -1), -1))
    np.testing.assert_allclose(np.asarray(value), direct, atol=1e-10)
    np.testing.assert_allclose(np.asarray(value), np.asarray(aligned_rmsd(x, y)), atol=1e-10)
    # The moved points are x up to a permutation and an isometry: same sorted pair distances.
    for b in range(6):
        dx = np.sort(np.linalg.norm(x[b][:, None] - x[b][None], axis=-1).ravel())
        dm = np.sort(np.linalg.norm(moved[b][:, None] - moved[b][None], axis=-1).ravel())
        np.testing.assert_allclose(dm, dx, atol=1e-10)


def test_superimpose_3d_proper_rotations(x64):
    rng = np.random.default_rng(9)
    y = rng.normal(size=(5, 3))
    x = rng.normal(size=(4, 5, 3))
    moved, value = superimpose(jnp.asarray(x), jnp.asarray(y), allow_reflection=False)
    direct = np.sqrt(np.mean(np.sum((np.asarray(moved) - y) ** 2, -1), -1))
    np.testing.assert_allclose(np.asarray(value), direct, atol=1e-10)
    ref = np.array([_brute_aligned_rmsd_3d(y, x[b]) for b in range(4)])
    np.testing.assert_allclose(np.asarray(value), ref, atol=1e-9)


@pytest.mark.allow_nonfinite
def test_permutations_never_map_real_points_onto_padding(x64):
    """Padded rows of y that happen to sit on x's points must not be matched to them."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(3, 2))
    y = rng.normal(size=(3, 2))
    xp = np.concatenate([x, np.zeros((3, 2))])
    yp = np.concatenate([y, x])  # the padding of y copies x exactly
    mask = np.array([1, 1, 1, 0, 0, 0.0])
    got = float(aligned_rmsd(jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(mask)))
    assert got == pytest.approx(float(aligned_rmsd(jnp.asarray(x), jnp.asarray(y))), abs=1e-10)
    assert got > 1e-3
    _, value = superimpose(jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(mask))
    assert float(value) == pytest.approx(got, abs=1e-10)
