"""Matrix-Fisher (SO(3)) and von Mises (SO(2)) pieces against independent references.

References: scipy.integrate.quad of the Bessel integral with scipy.special.ive,
brute-force Monte Carlo over Haar SO(3) (scipy.spatial.transform.Rotation.random),
the Laplace (large-s) asymptotics, and a uniform grid on the circle.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special
from scipy.spatial.transform import Rotation

from symdiff_jax.targets import matrix_fisher as mf


def _quad_log_c_scaled(s):
    """log c(s) - (s1 + s2 + s3) by scipy quad, on geometric sub-intervals at both ends.

    c(s) = int_{-1}^{1} 1/2 I0((s1-s2)(1-u)/2) I0((s1+s2)(1+u)/2) exp(s3 u) du with
    I0(z) = i0e(z) e^z (scipy.special.ive returns NaN above ~4e9). In the distance t = 1 -+ u from either end the exponents
    add up to -(s2 + s3) t or -(s2 + s3)(2 - t), and the integration is split at
    t = 10^-15, 10^-14, .., 1 so that quad sees the peaks of every width.
    """
    s1, s2, s3 = (float(v) for v in s)
    a, b, c = (s1 - s2) / 2.0, (s1 + s2) / 2.0, s2 + s3

    def near_plus(t):  # u = 1 - t
        return 0.5 * special.i0e(a * t) * special.i0e(b * (2 - t)) * np.exp(-c * t)

    def near_minus(t):  # u = -1 + t
        return 0.5 * special.i0e(a * (2 - t)) * special.i0e(b * t) * np.exp(-c * (2 - t))

    edges = np.concatenate([[0.0], 10.0 ** np.arange(-15.0, 0.5, 1.0)])
    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            for f in (near_plus, near_minus):
                total += integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-13, limit=100)[0]
    return np.log(total)


def _quad_log_c_direct(s):
    """log c(s) straight from the Bessel integral in u with scipy's unscaled I0 (s <~ 50)."""
    s1, s2, s3 = (float(v) for v in s)

    def integrand(u):
        return (
            0.5
            * special.iv(0, (s1 - s2) * (1 - u) / 2)
            * special.iv(0, (s1 + s2) * (1 + u) / 2)
            * np.exp(s3 * u)
        )

    return np.log(integrate.quad(integrand, -1, 1, epsabs=0, epsrel=1e-13, limit=200)[0])


def _s_grid():
    """Proper singular values from 1e-8 to 1e10, random and degenerate."""
    rng = np.random.default_rng(0)
    out = []
    for scale in 10.0 ** np.arange(-8, 11, 2):
        x = np.sort(rng.uniform(0, 1, 3))[::-1] * scale
        x[2] *= -1
        out += [
            x,
            [scale, 0, 0],  # rank 1
            [scale, 0.4 * scale, 0],  # rank 2
            [scale, scale, scale],  # all equal
            [scale, scale, -scale],  # degenerate maximiser set
            [scale, 0.3 * scale, -0.2 * scale],  # negative s3
            [scale, scale, 0],
        ]
    return np.array(out, dtype=np.float64)


# One compiled function per dtype for the whole file.
_scaled_and_moments = jax.jit(lambda s: (mf.log_normaliser(s, scaled=True), mf.moments(s)))


@functools.cache
def _reference():
    s = _s_grid()
    return s, np.array([_quad_log_c_scaled(v) for v in s])


@pytest.mark.usefixtures("x64")
def test_log_normaliser_matches_quad_over_all_scales():
    s, ref = _reference()
    ours = np.asarray(_scaled_and_moments(jnp.asarray(s))[0])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    # unscaled, against the plain integral with unscaled Bessel functions
    moderate = s[np.abs(s).max(-1) <= 50]
    direct = np.array([_quad_log_c_direct(v) for v in moderate])
    unscaled = np.asarray(jax.jit(mf.log_normaliser)(jnp.asarray(moderate)))
    np.testing.assert_allclose(unscaled, direct, rtol=1e-12, atol=1e-12)


def test_log_normaliser_float32_close_to_reference():
    s, ref = _reference()
    ours, m32 = (np.asarray(a) for a in _scaled_and_moments(jnp.float32(s)))
    assert np.isfinite(ours).all() and np.isfinite(m32).all()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    with jax.enable_x64(True):
        m64 = np.asarray(_scaled_and_moments(jnp.asarray(s))[1])
    np.testing.assert_allclose(m32, m64, rtol=0, atol=1e-6)


_log_c_and_mean = jax.jit(lambda F: (mf.matrix_fisher_log_normaliser(F), mf.expected_rotation(F)))


def _haar_mc(F, n=1_000_000, seed=0):
    """Brute force over Haar SO(3): c(F) = E[e^<F,R>] and E_F[R], with standard errors."""
    R = Rotation.random(n, random_state=seed).as_matrix()
    w = np.exp(np.einsum("ij,kij->k", F, R))
    c, c_se = w.mean(), w.std() / np.sqrt(n)
    mean = np.einsum("k,kij->ij", w, R) / w.sum()
    # delta method for the self-normalised mean
    resid = w[:, None, None] * (R - mean)
    mean_se = np.sqrt((resid**2).sum(0)) / w.sum()
    return c, c_se, mean, mean_se


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_normaliser_and_mean_match_haar_monte_carlo(scale):
    """Agreement within 5 standard errors (false alarm < 1e-5 per entry)."""
    rng = np.random.default_rng(int(scale * 10))
    F = rng.normal(size=(3, 3)) * scale
    if scale > 2:
        F = F @ np.diag([1, 1, -1])  # a negative determinant too
    c, c_se, mean, mean_se = _haar_mc(F, seed=int(scale * 10))
    log_c, ours = _log_c_and_mean(jnp.asarray(F))
    assert abs(np.exp(float(log_c)) - c) < 5 * c_se
    ours = np.asarray(ours)
    assert np.all(np.abs(ours - mean) < 5 * mean_se + 1e-12), (ours, mean, mean_se)


@pytest.mark.usefixtures("x64")
def test_moments_are_derivatives_of_quad_log_normaliser():
    """m_i = d log c / d s_i, by central differences of the scipy reference."""
    for s in [(3.0, 1.5, -0.5), (40.0, 10.0, 2.0), (2e3, 1e3, -4e2), (0.5, 0.2, 0.1)]:
        s = np.array(s)
        m = np.asarray(_scaled_and_moments(jnp.asarray(s))[1])
        for i in range(3):
            h = 1e-4 * s[0]
            sp, sm = s.copy(), s.copy()
            sp[i] += h
            sm[i] -= h
            fd = 1.0 + (_quad_log_c_scaled(sp) - _quad_log_c_scaled(sm)) / (2 * h)
            assert abs(m[i] - fd) < 1e-6, (s, i, m[i], fd)


@pytest.mark.usefixtures("x64")
def test_moments_limits():
    """Small s: E[Q] = S/3 + O(s^2) (Haar second moments). Large s: Laplace,
    1 - E[Q_11] = (1/(s1+s2) + 1/(s1+s3)) / 2 + O(1/s^2)."""
    s = np.array([3e-7, 2e-7, -1e-7])
    np.testing.assert_allclose(np.asarray(_scaled_and_moments(jnp.asarray(s))[1]), s / 3, rtol=1e-6)
    s = np.array([4e6, 2e6, 1e6])
    m = np.asarray(_scaled_and_moments(jnp.asarray(s))[1])
    laplace = 0.5 * np.array(
        [
            1 / (s[0] + s[1]) + 1 / (s[0] + s[2]),
            1 / (s[0] + s[1]) + 1 / (s[1] + s[2]),
            1 / (s[0] + s[2]) + 1 / (s[1] + s[2]),
        ]
    )
    np.testing.assert_allclose(1 - m, laplace, rtol=1e-5)


@pytest.mark.usefixtures("x64")
def test_autodiff_of_log_normaliser_equals_moments():
    s = jnp.array([[5.0, 2.0, -1.0], [3.0, 3.0, 0.0], [1e4, 10.0, 1.0]])
    grads = jax.jit(jax.vmap(jax.grad(mf.log_normaliser)))(s)
    np.testing.assert_allclose(np.asarray(grads), np.asarray(_scaled_and_moments(s)[1]), atol=1e-9)


@pytest.mark.usefixtures("x64")
def test_proper_svd():
    rng = np.random.default_rng(3)
    F = rng.normal(size=(50, 3, 3))
    U, s, V = (np.asarray(a) for a in jax.jit(mf.proper_svd)(jnp.asarray(F)))
    np.testing.assert_allclose(np.einsum("bij,bj,bkj->bik", U, s, V), F, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(U), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(V), 1.0, atol=1e-12)
    assert np.all(s[:, 0] >= s[:, 1]) and np.all(s[:, 1] >= np.abs(s[:, 2]))
    np.testing.assert_array_equal(np.sign(s[:, 2]), np.sign(np.linalg.det(F)))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("kappa_scale", [1e-6, 0.7, 30.0, 1e7])
def test_von_mises_matches_circle_grid(kappa_scale):
    """A uniform grid integrates periodic analytic functions to machine precision."""
    rng = np.random.default_rng(1)
    F = rng.normal(size=(2, 2)) * kappa_scale
    theta = np.linspace(0, 2 * np.pi, 1 << 16, endpoint=False)
    R = np.stack(
        [
            np.stack([np.cos(theta), -np.sin(theta)], -1),
            np.stack([np.sin(theta), np.cos(theta)], -1),
        ],
        -2,
    )
    expo = np.einsum("ij,kij->k", F, R)
    w = np.exp(expo - expo.max())
    log_c = np.log(w.mean()) + expo.max()
    mean = np.einsum("k,kij->ij", w, R) / w.sum()
    kappa = mf.von_mises_parameters(jnp.asarray(F))[0]
    np.testing.assert_allclose(
        float(mf.von_mises_log_normaliser(kappa)), log_c, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        np.asarray(mf.von_mises_expected_rotation(jnp.asarray(F))), mean, atol=1e-9
    )


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        mf.log_normaliser(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="3, 3"):
        mf.expected_rotation(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="2, 2"):
        mf.von_mises_expected_rotation(jnp.ones((3, 3)))


_HANG_SCRIPT = """
import jax.numpy as jnp
import numpy as np
from symdiff_jax.metrics.alignment import kabsch
from symdiff_jax.targets import proper_svd, symmetrised_target_exact

inf_matrix = jnp.array([[jnp.inf, -1.26, 1.51], [1.35, 0.78, 0.26], [-0.31, 1.46, 1.96]])
assert np.isnan(proper_svd(inf_matrix).s).all()
# Finite inputs whose F = x_t^T x0 overflows to a matrix with one Inf.
x0 = jnp.array([[[1e20, 1.0, 2.0], [0.5, 0.3, 0.1]]])
assert np.isnan(symmetrised_target_exact(x0[0], x0, 1.0, 1.0)).all()
y = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
assert np.isnan(kabsch(y.at[0, 0].set(jnp.inf), y, center=False)).all()
print("returned")
"""


@pytest.mark.allow_nonfinite
def test_non_finite_matrices_never_reach_the_svd():
    """XLA:CPU's SVD does not return on some 3x3 matrices with one Inf (e.g. the one
    below); proper_svd, the exact target and `kabsch` return NaN at once.
    Run in a fresh process with a time limit (240 s: about 10 s on an idle core), since a
    hang cannot be interrupted."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        out = subprocess.run(
            [sys.executable, "-c", _HANG_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a decomposition of a non-finite matrix did not return within 240 s")
    assert out.returncode == 0 and "returned" in out.stdout, out.stderr[-2000:]
