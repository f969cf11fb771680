"""Haar laws of the samplers on O(3), SO(3), O(2), SO(2), and the QR map to O(d).

Each law is a `check_*` function on a sample `[n, d, d]` that raises
AssertionError when the law is rejected. Every check runs on our samplers
(it must pass) and on a deliberately broken sampler defined below (it must
fail), so the suite shows that it can tell a biased sampler apart.

False-alarm rate: every check is a test at level ALPHA = 1e-3 (Bonferroni
inside a check when it makes several comparisons), so a correct sampler fails
a given check for a given seed with probability at most 1e-3. Seeds are fixed,
so the outcome is reproducible.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from symdiff_jax.groups import (
    haar_o2,
    haar_o3,
    haar_orthogonal,
    haar_so2,
    haar_so3,
    haar_special_orthogonal,
    qr_to_orthogonal,
    sample_group,
)

ALPHA = 1e-3
NUM = 20_000
# Two-sided normal quantile for ALPHA split over 18 moment comparisons.
Z_MOMENTS = st.norm.isf(ALPHA / (2 * 18))


# ----------------------------------------------------------------------------- broken samplers


def qr_without_sign_fix(key, shape=()):
    """Q of a Gaussian matrix without Mezzadri's sign fix: not Haar (LAPACK's signs)."""
    return jnp.linalg.qr(jax.random.normal(key, tuple(shape) + (3, 3)))[0]


def uniform_euler_angles(key, shape=()):
    """ZYZ Euler angles drawn uniformly: the classic non-uniform rotation sampler."""
    angles = np.asarray(jax.random.uniform(key, (int(np.prod(shape)), 3), jnp.float32))
    angles = angles * np.array([2 * np.pi, np.pi, 2 * np.pi])
    return Rotation.from_euler("ZYZ", angles).as_matrix().reshape(tuple(shape) + (3, 3))


def qr_of_uniform_entries(key, shape=()):
    """Sign-fixed QR of a matrix with Uniform[0, 1] entries: biased to the positive orthant."""
    return qr_to_orthogonal(jax.random.uniform(key, tuple(shape) + (3, 3)))


def reflection_biased(key, shape=()):
    """Haar on SO(3), then a reflection with probability 0.45 instead of 0.5."""
    k1, k2 = jax.random.split(key)
    signs = jnp.where(jax.random.uniform(k2, tuple(shape)) < 0.45, -1.0, 1.0)
    return haar_so3(k1, shape) * signs[..., None, None]


def so2_angle_biased(key, shape=()):
    """Planar rotations with angle Uniform[0, 2 pi) ** 1.1 / (2 pi) ** 0.1: not uniform."""
    u = jax.random.uniform(key, tuple(shape), minval=0.0, maxval=2 * jnp.pi)
    a = u**1.1 / (2 * jnp.pi) ** 0.1
    c, s = jnp.cos(a), jnp.sin(a)
    return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)


def o2_without_reflections(key, shape=()):
    """Haar on SO(2) sold as O(2): the det = -1 coset is missing."""
    return haar_so2(key, shape)


SAMPLERS = {
    "haar_o3": haar_o3,
    "haar_so3": haar_so3,
    "haar_o2": haar_o2,
    "haar_so2": haar_so2,
    "qr_without_sign_fix": qr_without_sign_fix,
    "uniform_euler_angles": uniform_euler_angles,
    "qr_of_uniform_entries": qr_of_uniform_entries,
    "reflection_biased": reflection_biased,
    "so2_angle_biased": so2_angle_biased,
    "o2_without_reflections": o2_without_reflections,
}


@functools.cache
def samples(name: str, seed: int = 0) -> np.ndarray:
    """NUM samples of a named sampler, float64 numpy `[NUM, d, d]` (cached per module)."""
    return np.asarray(SAMPLERS[name](jax.random.key(seed), (NUM,)), np.float64)


# ----------------------------------------------------------------------------- laws, 3D


def so3_part(r):
    """det(R) R: the SO(3) part of R in O(3) (the det = -1 coset is -SO(3))."""
    return r * np.linalg.det(r)[:, None, None]


def rotation_angle(r):
    """Angle theta in [0, pi] of rotations `[n, 3, 3]`: tr R = 1 + 2 cos theta."""
    return np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0))


def check_orthogonal(r, special):
    """R^T R = I, |det R| = 1 (det = +1 when `special`)."""
    eye = np.eye(r.shape[-1])
    err = np.abs(np.swapaxes(r, -1, -2) @ r - eye).max()
    assert err < 1e-5, f"R^T R differs from I by up to {err:.2e}"
    det = np.linalg.det(r)
    assert np.abs(np.abs(det) - 1).max() < 1e-5, "some |det R| != 1"
    if special:
        assert det.min() > 0, f"a sample has det = {det.min():.3f} in a special group"


def check_angle_law(r):
    """KS test of the rotation angle of det(R) R against the Haar law on SO(3).

    Haar on SO(3) has angle density (1 - cos theta) / pi on [0, pi], so
    CDF(theta) = (theta - sin theta) / pi.
    """
    theta = rotation_angle(so3_part(r))
    p = st.kstest(theta, lambda t: (t - np.sin(t)) / np.pi).pvalue
    assert p > ALPHA, f"rotation angle law rejected: KS p = {p:.2e}"


def check_moments(r):
    """E[R_ij] = 0 and E[R_ij^2] = 1/3 within normal tolerances from the sample size.

    Under Haar on O(3) or SO(3) each entry is uniform on [-1, 1] (a coordinate
    of a uniform unit vector, Archimedes), so Var R_ij = 1/3 and
    Var R_ij^2 = 1/5 - 1/9 = 4/45.
    """
    n = r.shape[0]
    z_mean = np.abs(r.mean(0)) / np.sqrt(1 / (3 * n))
    z_square = np.abs((r**2).mean(0) - 1 / 3) / np.sqrt(4 / (45 * n))
    assert z_mean.max() < Z_MOMENTS, f"E[R] != 0: z-scores {z_mean.round(1).tolist()}"
    assert z_square.max() < Z_MOMENTS, f"E[R^2] != 1/3: z-scores {z_square.round(1).tolist()}"


def check_entries_uniform(r):
    """KS test of every entry R_ij against Uniform[-1, 1] (Bonferroni over the 9 entries)."""
    p = min(st.kstest(r[:, i, j], st.uniform(-1, 2).cdf).pvalue for i in range(3) for j in range(3))
    assert p > ALPHA / 9, f"entry law rejected: smallest KS p = {p:.2e}"


def check_det_balance(r):
    """Exact binomial test of P(det R = +1) = 1/2 (Haar on O(3) puts mass 1/2 on each coset)."""
    n_pos = int((np.linalg.det(r) > 0).sum())
    p = st.binomtest(n_pos, r.shape[0], 0.5).pvalue
    assert p > ALPHA, f"det balance rejected: {n_pos}/{r.shape[0]} positive, p = {p:.2e}"


def check_matches_scipy(r):
    """Two-sample KS tests of det(R) R against scipy's Rotation.random on 10 statistics.

    Statistics: the 9 entries and the rotation angle (Bonferroni over 10).
    """
    ref = Rotation.random(r.shape[0], random_state=1234).as_matrix()
    ours = so3_part(r)
    stats = [(ours[:, i, j], ref[:, i, j]) for i in range(3) for j in range(3)]
    stats.append((rotation_angle(ours), rotation_angle(ref)))
    p = min(st.ks_2samp(a, b).pvalue for a, b in stats)
    assert p > ALPHA / len(stats), f"law differs from scipy's Rotation.random: p = {p:.2e}"


def check_left_invariance(r, r_other):
    """Q R has the law of R for a fixed rotation Q: two-sample KS per entry (Bonferroni 9).

    `r` and `r_other` are independent samples of the same sampler.
    """
    q = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    moved = q @ r_other
    p = min(st.ks_2samp(r[:, i, j], moved[:, i, j]).pvalue for i in range(3) for j in range(3))
    assert p > ALPHA / 9, f"left invariance rejected: smallest KS p = {p:.2e}"


# ----------------------------------------------------------------------------- laws, 2D


def check_planar_angle_uniform(r):
    """KS test of atan2(R_10, R_00) against Uniform(-pi, pi] (Haar on SO(2) and on O(2))."""
    angle = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    p = st.kstest(angle, st.uniform(-np.pi, 2 * np.pi).cdf).pvalue
    assert p > ALPHA, f"planar angle law rejected: KS p = {p:.2e}"


def check_planar_entry_arcsine(r):
    """KS test of R_00 = cos(angle) against the arcsine law, CDF 1 - arccos(c) / pi."""
    p = st.kstest(r[:, 0, 0], lambda c: 1.0 - np.arccos(np.clip(c, -1, 1)) / np.pi).pvalue
    assert p > ALPHA, f"R_00 law rejected: KS p = {p:.2e}"


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name, special", [("haar_o3", False), ("haar_so3", True)])
def test_orthogonal(name, special):
    check_orthogonal(samples(name), special)


@pytest.mark.parametrize("name", ["haar_o3", "haar_so3"])
@pytest.mark.parametrize(
    "check", [check_angle_law, check_moments, check_entries_uniform, check_matches_scipy]
)
def test_haar_law_3d(check, name):
    check(samples(name))


@pytest.mark.parametrize("name", ["haar_o3", "haar_so3"])
def test_left_invariance(name):
    check_left_invariance(samples(name), samples(name, seed=1))


def test_det_balance_o3():
    check_det_balance(samples("haar_o3"))


def test_so2_and_o2_laws():
    for name in ("haar_so2", "haar_o2"):
        check_orthogonal(samples(name), special=name == "haar_so2")
        check_planar_angle_uniform(samples(name))
        check_planar_entry_arcsine(samples(name))
    check_det_balance(samples("haar_o2"))


@pytest.mark.parametrize(
    "check, broken",
    [
        (check_angle_law, "qr_without_sign_fix"),
        (check_angle_law, "uniform_euler_angles"),
        (check_moments, "qr_without_sign_fix"),
        (check_moments, "uniform_euler_angles"),
        (check_entries_uniform, "qr_of_uniform_entries"),
        (check_det_balance, "reflection_biased"),
        (check_det_balance, "qr_without_sign_fix"),
        (check_matches_scipy, "qr_without_sign_fix"),
        (check_matches_scipy, "qr_of_uniform_entries"),
        (check_planar_angle_uniform, "so2_angle_biased"),
        (check_planar_entry_arcsine, "so2_angle_biased"),
        (check_orthogonal, "o2_without_reflections"),
    ],
)
def test_broken_sampler_is_caught(check, broken):
    """Each law rejects a biased sampler (the test passes when the check raises)."""
    r = samples(broken)
    with pytest.raises(AssertionError):
        if check is check_orthogonal:
            # O(2) without reflections is orthogonal; what it misses is the det balance.
            check_det_balance(r)
        else:
            check(r)


def test_left_invariance_catches_broken_sampler():
    with pytest.raises(AssertionError):
        check_left_invariance(samples("qr_without_sign_fix"), samples("qr_without_sign_fix", 1))


def test_orthogonality_catches_non_orthogonal():
    r = samples("haar_o3") * 1.001
    with pytest.raises(AssertionError):
        check_orthogonal(r, special=False)


def test_special_check_catches_reflections():
    with pytest.raises(AssertionError):
        check_orthogonal(samples("haar_o3"), special=True)


# ----------------------------------------------------------------------------- API details


@pytest.mark.parametrize("group, dim", [("O3", 3), ("SO3", 3), ("O2", 2), ("SO2", 2)])
def test_sample_group_shapes_and_dtypes(group, dim, x64):
    r = sample_group(jax.random.key(0), group, (4, 2))
    assert r.shape == (4, 2, dim, dim)
    assert r.dtype == jnp.float64
    r32 = sample_group(jax.random.key(0), group, (3,), jnp.float32)
    assert r32.dtype == jnp.float32
    err = jnp.abs(jnp.swapaxes(r, -1, -2) @ r - jnp.eye(dim)).max()
    assert err < 1e-12


def test_generic_dimension_samplers():
    r = haar_orthogonal(jax.random.key(1), 5, (7,))
    s = haar_special_orthogonal(jax.random.key(1), 5, (7,))
    assert r.shape == s.shape == (7, 5, 5)
    np.testing.assert_allclose(np.linalg.det(np.asarray(s)), 1.0, atol=1e-5)


def test_sample_group_is_jittable_and_keyed():
    f = jax.jit(lambda k: sample_group(k, "O3", (2,)))
    np.testing.assert_array_equal(f(jax.random.key(3)), f(jax.random.key(3)))
    assert not np.allclose(f(jax.random.key(3)), f(jax.random.key(4)))


def test_unknown_group_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown group"):
        sample_group(jax.random.key(0), "SU2")


# ----------------------------------------------------------------------------- qr_to_orthogonal
# Lands in O(d)/SO(d), follows Mezzadri's sign convention, has correct gradients (central
# finite differences of a numpy float64 reference); Gaussian input gives Haar (KS, level 1e-3).


def numpy_sign_fixed_qr(a, special=False):
    """Reference: numpy QR with columns scaled by sign(diag R); flip the last column if det < 0."""
    q, r = np.linalg.qr(a)
    d = np.diagonal(r, axis1=-2, axis2=-1)
    q = q * np.where(d < 0, -1.0, 1.0)[..., None, :]
    if special:
        det = np.linalg.det(q)
        q[..., :, -1] *= np.where(det < 0, -1.0, 1.0)[..., None]
    return q


def test_output_is_orthogonal_and_special(x64):
    a = jax.random.normal(jax.random.key(0), (64, 3, 3))
    q = qr_to_orthogonal(a)
    s = qr_to_orthogonal(a, special=True)
    for m in (q, s):
        np.testing.assert_allclose(
            jnp.swapaxes(m, -1, -2) @ m, np.broadcast_to(np.eye(3), m.shape), atol=1e-12
        )
    np.testing.assert_allclose(np.abs(np.linalg.det(q)), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(s), 1.0, atol=1e-12)
    # Both signs occur without `special`.
    assert (np.linalg.det(q) < 0).any() and (np.linalg.det(q) > 0).any()


def test_sign_convention_positive_diagonal(x64):
    """A = Q R with R = Q^T A upper triangular and diag(R) > 0 (unique: Mezzadri 2006, sec. 5)."""
    a = jax.random.normal(jax.random.key(1), (128, 3, 3))
    q = qr_to_orthogonal(a)
    r = np.asarray(jnp.swapaxes(q, -1, -2) @ a)
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-12)
    assert (np.diagonal(r, axis1=-2, axis2=-1) > 0).all()


@pytest.mark.parametrize("special", [False, True])
def test_matches_numpy_reference(special, x64):
    a = np.random.default_rng(0).normal(size=(50, 3, 3))
    np.testing.assert_allclose(
        qr_to_orthogonal(jnp.asarray(a), special=special),
        numpy_sign_fixed_qr(a, special),
        atol=1e-12,
    )


def test_left_equivariance(x64):
    """qr(M A) = M qr(A) for orthogonal M: the reason Gaussian input gives Haar output."""
    a = jax.random.normal(jax.random.key(2), (32, 3, 3))
    m = jnp.asarray(Rotation.random(32, random_state=3).as_matrix() * np.array([1, 1, -1]))
    np.testing.assert_allclose(qr_to_orthogonal(m @ a), m @ qr_to_orthogonal(a), atol=1e-10)


def test_gaussian_input_is_haar():
    """Angle law of det(Q) Q for Q = qr(Gaussian): CDF (theta - sin theta) / pi (KS, level 1e-3)."""
    q = np.asarray(
        qr_to_orthogonal(jax.random.normal(jax.random.key(3), (20_000, 3, 3))), np.float64
    )
    q = q * np.linalg.det(q)[:, None, None]
    theta = np.arccos(np.clip((np.trace(q, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert st.kstest(theta, lambda t: (t - np.sin(t)) / np.pi).pvalue > 1e-3


@pytest.mark.parametrize("special", [False, True])
def test_gradient_matches_finite_differences(special, x64):
    """jax.grad of sum(W * qr(A)) against central differences of the numpy reference."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 3))
    w = rng.normal(size=(3, 3))

    def loss(m):
        return jnp.sum(w * qr_to_orthogonal(m, special=special))

    grad = np.asarray(jax.grad(loss)(jnp.asarray(a)))
    assert np.isfinite(grad).all() and np.abs(grad).max() > 1e-3
    h = 1e-6
    fd = np.zeros_like(a)
    for i in range(3):
        for j in range(3):
            e = np.zeros_like(a)
            e[i, j] = h
            fd[i, j] = (
                np.sum(w * numpy_sign_fixed_qr(a + e, special))
                - np.sum(w * numpy_sign_fixed_qr(a - e, special))
            ) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_gradient_finite_over_batch_and_jvp_consistent(x64):
    a = jax.random.normal(jax.random.key(5), (256, 3, 3))
    g = jax.grad(lambda m: jnp.sum(qr_to_orthogonal(m) ** 3))(a)
    assert np.isfinite(np.asarray(g)).all()
    check_grads(qr_to_orthogonal, (a[0],), order=1, modes=("rev",))


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        qr_to_orthogonal(jnp.ones((3, 2)))
