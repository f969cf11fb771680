"""symmetrised_target_exact against independent float64 references.

References written here in numpy/scipy: brute-force Monte Carlo over Haar O(3)/SO(3)
(scipy Rotation.random), Kabsch alignment by numpy SVD, closed forms (Z2 on the line),
explicit enumeration of finite groups, and a uniform grid on the circle for SO(2).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from symdiff_jax.targets import symmetrised_target_exact
from tests.targets.references import haar_rotations, orbit_log_weights

_exact_named = jax.jit(symmetrised_target_exact, static_argnames="group")
_exact_matrices = jax.jit(symmetrised_target_exact)


def _exact(x_t, x0, alpha, sigma, mask=None, permutations=None, bank_log_weights=None, *, group):
    """Jitted symmetrised_target_exact: a group name is static, matrices are traced."""
    fn = _exact_named if isinstance(group, str) else _exact_matrices
    kw = dict(mask=mask, permutations=permutations, bank_log_weights=bank_log_weights)
    return fn(x_t, x0, alpha, sigma, group=group, **kw)


def _bank(rng, m, n, d=3, scale=1.0, n_real=None):
    x0 = rng.normal(size=(m, n, d)) * scale
    n_real = n if n_real is None else n_real
    x0[:, n_real:] = 0.0
    x0[:, :n_real] -= x0[:, :n_real].mean(1, keepdims=True)
    return x0


def _numpy_mc(x_t, x0, alpha, sigma, perms, log_w, improper, n=1_000_000, seed=0, batches=50):
    """phi_G by self-normalised Monte Carlo over Haar SO(3) (x {+-I} for O(3)), with
    every permutation and bank member enumerated; returns (estimate, standard error).

    For y = x0[m][p] and sample R_k: log w_k = -||x_t - alpha y R_k^T||^2 / (2 sigma^2)
    and the image y R_k^T are linear in R_k, so the sums over k are taken on the
    flattened 3x3 matrices. The standard error comes from `batches` batch means.
    """
    Rf = haar_rotations(n, improper, seed).reshape(n, 9)
    ys, logits = [], []
    for p in perms:
        for m in range(x0.shape[0]):
            y = x0[m][p]
            ys.append(y)
            logits.append(orbit_log_weights(x_t, y, alpha, sigma, Rf) + log_w[m])
    w = np.exp(np.stack(logits) - max(np.max(v) for v in logits))  # [P M, n]
    wb = w.reshape(len(ys), batches, -1)
    wr = np.einsum("cbk,bkj->cbj", wb, Rf.reshape(batches, -1, 9))  # [P M, B, 9]
    num = sum(y @ wr[c].reshape(batches, 3, 3).transpose(0, 2, 1) for c, y in enumerate(ys))
    den = wb.sum((0, 2))  # [B]
    est = num.sum(0) / den.sum()
    batch_est = num / den[:, None, None]
    se = batch_est.std(0, ddof=1) / np.sqrt(batches)
    return est, se


CASES = [
    # group, mask?, permutations?, bank weights?
    ("O3", False, False, False),
    ("SO3", True, False, True),
    ("O3", True, True, False),
    ("SO3", False, True, True),
]


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("group,use_mask,use_perms,use_weights", CASES)
def test_matches_numpy_monte_carlo(group, use_mask, use_perms, use_weights):
    """Relative error < 1e-2 and every entry within 6 MC standard errors (batch means,
    t with 49 degrees of freedom: false-alarm rate ~2e-7 per entry)."""
    rng = np.random.default_rng(hash((group, use_mask, use_perms)) % 2**32)
    n, n_real, m = 5, 4 if use_mask else 5, 3
    x0 = _bank(rng, m, n, n_real=n_real)
    mask = (np.arange(n) < n_real).astype(float)
    alpha = 0.7
    sigma = np.sqrt(1 - alpha**2)
    x_t = (alpha * x0[1] @ Rotation.random(random_state=1).as_matrix().T) + sigma * rng.normal(
        size=(n, 3)
    )
    x_t *= mask[:, None]
    # Klein four-group on atoms 0..3 (a permutation group), atom 4 fixed.
    perms = np.array([[0, 1, 2, 3, 4], [1, 0, 3, 2, 4], [2, 3, 0, 1, 4], [3, 2, 1, 0, 4]])
    perms = perms if use_perms else np.arange(n)[None]
    log_w = np.log([0.5, 0.3, 0.2]) if use_weights else np.zeros(m)
    ours = np.asarray(
        _exact(
            x_t,
            x0,
            alpha,
            sigma,
            mask if use_mask else None,
            perms if use_perms else None,
            log_w if use_weights else None,
            group=group,
        )
    )
    ref, se = _numpy_mc(x_t, x0, alpha, sigma, perms, log_w, improper=group == "O3", seed=3)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-2
    assert np.all(np.abs(ours - ref) <= 6 * se + 1e-12), np.abs(ours - ref) / se
    np.testing.assert_array_equal(ours[n_real:], 0.0)


def _euler_grid(n=64):
    """A product quadrature on SO(3) in ZYZ Euler angles for the Haar probability
    measure dR = sin(b) da db dg / (8 pi^2): uniform (periodic) in a and g,
    Gauss-Legendre in cos(b). Exact for band-limited functions, spectrally accurate
    for the smooth weights here."""
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    cb, wb = np.polynomial.legendre.leggauss(n)
    a, b, g = np.meshgrid(ang, np.arccos(cb), ang, indexing="ij")
    w = np.broadcast_to(wb[None, :, None], a.shape).ravel() / (2 * n * n)
    R = Rotation.from_euler("ZYZ", np.stack([a.ravel(), b.ravel(), g.ravel()], -1)).as_matrix()
    return R, w


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("group", ["O3", "SO3"])
def test_matches_euler_angle_quadrature(group):
    """A deterministic reference: 64^3-point Euler-angle quadrature of the group
    integrals, with a weighted bank of 3, a mask and a permutation group."""
    rng = np.random.default_rng(31)
    n, m = 5, 3
    x0 = _bank(rng, m, n, n_real=4)
    mask = np.array([1, 1, 1, 1, 0.0])
    alpha = 0.7
    sigma = np.sqrt(1 - alpha**2)
    x_t = (alpha * x0[0] @ Rotation.random(random_state=4).as_matrix().T) * mask[:, None]
    x_t += sigma * rng.normal(size=(n, 3)) * mask[:, None]
    perms = np.array([[0, 1, 2, 3, 4], [1, 0, 3, 2, 4], [2, 3, 0, 1, 4], [3, 2, 1, 0, 4]])
    log_w = np.array([0.2, -0.3, 0.0])
    R, qw = _euler_grid()
    if group == "O3":
        R, qw = np.concatenate([R, -R]), np.concatenate([qw, qw]) / 2
    Rf = R.reshape(-1, 9)
    num, den = np.zeros((n, 3)), 0.0
    for p in perms:
        for k in range(m):
            y = x0[k][p]
            w = qw * np.exp(orbit_log_weights(x_t, y, alpha, sigma, Rf) + log_w[k])
            num += y @ (w @ Rf).reshape(3, 3).T
            den += w.sum()
    ours = np.asarray(_exact(x_t, x0, alpha, sigma, mask, perms, log_w, group=group))
    np.testing.assert_allclose(ours, num / den, rtol=0, atol=1e-12)


def _kabsch_closest(x_t, x0, alpha, perms, proper):
    """The closest orbit point alpha-scaled: argmin over perms, bank, R of
    ||x_t - alpha R.x0[p]||^2, by numpy SVD (Kabsch with det correction for SO(3))."""
    best, best_d = None, np.inf
    for p in perms:
        for m in range(x0.shape[0]):
            y = x0[m][p]
            u, _, vt = np.linalg.svd(x_t.T @ y)
            d = np.sign(np.linalg.det(u @ vt)) if proper else 1.0
            R = u @ np.diag([1.0, 1.0, d]) @ vt
            dist = ((x_t - alpha * y @ R.T) ** 2).sum()
            if dist < best_d:
                best, best_d = y @ R.T, dist
    return best


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("group", ["O3", "SO3"])
@pytest.mark.parametrize("use_perms", [False, True])
def test_small_noise_limit_is_kabsch_closest_orbit_point(group, use_perms):
    rng = np.random.default_rng(7)
    n, m = 6, 4
    x0 = _bank(rng, m, n, scale=2.0)
    sigma = 0.01
    alpha = np.sqrt(1 - sigma**2)
    g = Rotation.random(random_state=2).as_matrix() * (-1.0 if group == "O3" else 1.0)
    perms = np.array(list(itertools.permutations(range(3)))) if use_perms else None
    full = None if perms is None else np.concatenate([perms, np.tile([3, 4, 5], (6, 1))], 1)
    src = x0[2][full[4]] if use_perms else x0[2]
    x_t = alpha * src @ g.T + sigma * rng.normal(size=(n, 3))
    ours = np.asarray(_exact(x_t, x0, alpha, sigma, None, full, group=group))
    ref = _kabsch_closest(x_t, x0, alpha, full if use_perms else [np.arange(n)], group == "SO3")
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-3


@pytest.mark.parametrize("group", ["O3", "SO3", "O2", "SO2"])
def test_float32_finite_over_noise_range(group):
    """No NaN/Inf for sigma in [1e-3, 1], |x| ~ 1..10, N = 29 with padding; float32
    agrees with float64 to 1e-3 relative and padded rows are exactly zero."""
    d = 3 if group in ("O3", "SO3") else 2
    rng = np.random.default_rng(11)
    n, n_real = 29, 25
    mask = (np.arange(n) < n_real).astype(np.float32)
    sigmas = np.geomspace(1e-3, 1.0, 7)
    for scale in (1.0, 10.0):
        x0 = _bank(rng, 2, n, d, scale=scale, n_real=n_real)
        eps = rng.normal(size=(n, d)) * mask[:, None]
        for sigma in sigmas:
            alpha = np.sqrt(max(1 - sigma**2, 0.0))
            x_t = alpha * x0[0][::-1] * mask[:, None] + sigma * eps  # a scrambled x0
            out32 = np.asarray(
                _exact(
                    jnp.float32(x_t),
                    jnp.float32(x0),
                    jnp.float32(alpha),
                    jnp.float32(sigma),
                    jnp.asarray(mask),
                    group=group,
                )
            )
            assert np.isfinite(out32).all(), (scale, sigma)
            np.testing.assert_array_equal(out32[n_real:], 0.0)
            with jax.enable_x64(True):
                out64 = np.asarray(_exact(x_t, x0, alpha, sigma, mask.astype(float), group=group))
            err = np.linalg.norm(out32 - out64) / max(np.linalg.norm(out64), 1e-3 * scale)
            assert err < 1e-3, (scale, sigma, err)


@pytest.mark.parametrize("d", [3, 2])
def test_log_orbit_mass_keeps_float32_precision(d):
    """Near the data (x_t = alpha g.x0 + sigma eps, sigma = 1e-3, |x| ~ 10, N = 29) the
    log orbit masses are O(|x|^2 / sigma^2) ~ 1e9 as separate terms but O(N) in total;
    float32 must still give them to 0.1 absolute (float64 reference; the float32
    rounding of the ~1e-3 residuals alone costs ~0.02)."""
    from symdiff_jax.targets import so2_orbit_integral, so3_orbit_integral

    integral = jax.jit(so3_orbit_integral if d == 3 else so2_orbit_integral)
    rng = np.random.default_rng(37)
    x0 = _bank(rng, 3, 29, d=d, scale=10.0)
    x0[1] = x0[0] + 1e-3 * rng.normal(size=x0[0].shape)  # a near-duplicate conformer
    sigma = 1e-3
    alpha = np.sqrt(1 - sigma**2)
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    q[:, 0] *= np.linalg.det(q)  # a rotation
    x_t = alpha * x0[0] @ q.T + sigma * rng.normal(size=(29, d))
    log32, mean32 = integral(
        jnp.float32(x_t), jnp.float32(x0), jnp.float32(alpha), jnp.float32(sigma)
    )
    with jax.enable_x64(True):
        log64, mean64 = integral(x_t, x0, alpha, sigma)
    assert np.all(np.abs(np.asarray(log32)[:2] - np.asarray(log64)[:2]) < 0.1), (log32, log64)
    np.testing.assert_allclose(np.asarray(mean32), np.asarray(mean64), atol=1e-4 * 10.0)


@pytest.mark.parametrize("x64_on", [False, True])
def test_z2_reflection_closed_form(x64_on):
    """Data {+1}, G = {+1, -1} on the line. The two weights are
    w(+-1) = exp(-(x -+ alpha)^2 / (2 sigma^2)); their ratio is exp(2 alpha x / sigma^2), so
    phi = (w(+1) - w(-1)) / (w(+1) + w(-1)) = tanh(alpha x / sigma^2)."""
    z2 = np.array([[[1.0]], [[-1.0]]])
    bank = np.array([[[1.0]], [[-1.0]]])

    def phi(x, x0, alpha, sigma, group):
        return jax.vmap(lambda xt: _exact(xt[None, None], x0, alpha, sigma, group=group))(x)

    with jax.enable_x64(x64_on):
        x = jnp.asarray(np.linspace(-3, 3, 61))
        atol = 1e-12 if x64_on else 2e-6
        for sigma in (1e-3, 0.05, 0.5, 1.0):
            alpha = np.sqrt(1 - sigma**2)
            ref = np.tanh(alpha * np.asarray(x) / sigma**2)
            got = phi(x, jnp.ones((1, 1, 1)), alpha, sigma, jnp.asarray(z2))
            np.testing.assert_allclose(np.asarray(got)[:, 0, 0], ref, atol=atol)
            # the same as a bank {+1, -1} under the trivial group
            got = phi(x, jnp.asarray(bank), alpha, sigma, "trivial")
            np.testing.assert_allclose(np.asarray(got)[:, 0, 0], ref, atol=atol)


@pytest.mark.usefixtures("x64")
def test_permutations_and_matrices_match_brute_force():
    """All 24 elements of S_4 on atoms 0..3 x a 4-element matrix group x a weighted
    bank of 2, with one padded atom, against an explicit numpy double loop."""
    rng = np.random.default_rng(5)
    n, m = 6, 2
    mask = np.array([1, 1, 1, 1, 1, 0.0])
    x0 = _bank(rng, m, n, n_real=5)
    perms = np.array([list(p) + [4, 5] for p in itertools.permutations(range(4))])
    mats = np.array([np.diag(v) for v in ([1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1])])
    log_w = np.array([0.3, -0.4])
    alpha, sigma = 0.8, 0.6
    x_t = (alpha * x0[0][perms[7]] @ mats[2].T + sigma * rng.normal(size=(n, 3))) * mask[:, None]
    ours = np.asarray(_exact(x_t, x0, alpha, sigma, mask, perms, log_w, group=jnp.asarray(mats)))
    num, den = np.zeros((n, 3)), 0.0
    for p in perms:
        for g in mats:
            for k in range(m):
                y = x0[k][p] @ g.T
                w = np.exp(-((x_t - alpha * y) ** 2).sum() / (2 * sigma**2) + log_w[k])
                num, den = num + w * y, den + w
    np.testing.assert_allclose(ours, num / den, rtol=1e-12, atol=1e-14)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("group", ["SO2", "O2"])
@pytest.mark.parametrize("sigma", [0.05, 0.7])
def test_so2_o2_match_circle_grid(group, sigma):
    """A uniform grid on the circle integrates the periodic analytic weights to
    machine precision; O(2) adds the reflected coset."""
    rng = np.random.default_rng(9)
    n, m = 7, 3
    x0 = _bank(rng, m, n, d=2, n_real=6)
    mask = (np.arange(n) < 6).astype(float)
    alpha = np.sqrt(1 - sigma**2)
    x_t = (alpha * x0[1][::-1] + sigma * rng.normal(size=(n, 2))) * mask[:, None]
    theta = np.linspace(0, 2 * np.pi, 1 << 14, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    R = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    if group == "O2":
        R = np.concatenate([R, R @ np.diag([1.0, -1.0])])
    imgs = np.einsum("mnj,kij->kmni", x0, R).reshape(-1, n, 2)
    logits = -((x_t - alpha * imgs) ** 2).sum((1, 2)) / (2 * sigma**2)
    w = np.exp(logits - logits.max())
    ref = np.einsum("k,kni->ni", w, imgs) / w.sum()
    ours = np.asarray(_exact(x_t, x0, alpha, sigma, mask, group=group))
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def _orthogonal(seed, proper):
    R = Rotation.random(random_state=seed).as_matrix()
    return R if proper else -R


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("group", ["O3", "SO3"])
def test_equivariance_under_rotations_and_permutations(group):
    """phi_G(sigma . (x_t Q^T)) = sigma . (phi_G(x_t) Q^T) for Q in O(3) (SO(3)) and sigma
    in the permutation group (all of S_4 on atoms 0..3), and phi_G only depends on the
    orbit of the bank."""
    rng = np.random.default_rng(13)
    n = 6
    mask = np.array([1, 1, 1, 1, 1, 0.0])
    x0 = _bank(rng, 3, n, n_real=5)
    perms = np.array([list(p) + [4, 5] for p in itertools.permutations(range(4))])
    alpha, sigma = 0.6, 0.8
    x_t = rng.normal(size=(n, 3)) * mask[:, None]
    base = np.asarray(_exact(x_t, x0, alpha, sigma, mask, perms, group=group))
    for trial in range(4):
        Q = _orthogonal(trial, proper=group == "SO3" or trial % 2 == 0)
        p = perms[rng.integers(24)]
        moved = np.asarray(_exact(x_t[p] @ Q.T, x0, alpha, sigma, mask, perms, group=group))
        np.testing.assert_allclose(moved, base[p] @ Q.T, atol=1e-10)
        # the bank enters only through its orbit
        q = perms[rng.integers(24)]
        moved_bank = x0[:, q] @ Q.T
        same = np.asarray(_exact(x_t, moved_bank, alpha, sigma, mask, perms, group=group))
        np.testing.assert_allclose(same, base, atol=1e-10)


@pytest.mark.usefixtures("x64")
def test_mask_equals_unpadded_computation():
    rng = np.random.default_rng(17)
    x0 = _bank(rng, 2, 5)
    x_t = rng.normal(size=(5, 3))
    ref = np.asarray(_exact(x_t, x0, 0.5, 0.9, group="O3"))
    pad = np.zeros((2, 3, 3))
    x0p = np.concatenate([x0, pad], 1)
    x_tp = np.concatenate([x_t, np.full((3, 3), 7.0)], 0)  # garbage in padded rows
    x0p[0, 5:], x0p[1, 5:] = 5.0, -1.0  # different garbage per bank member
    mask = np.array([1, 1, 1, 1, 1, 0, 0, 0.0])
    out = np.asarray(_exact(x_tp, x0p, 0.5, 0.9, mask, group="O3"))
    np.testing.assert_allclose(out[:5], ref, atol=1e-12)
    np.testing.assert_array_equal(out[5:], 0.0)


@pytest.mark.usefixtures("x64")
def test_bank_log_weights():
    """A -inf-like weight removes a member; a common offset changes nothing."""
    rng = np.random.default_rng(19)
    x0 = _bank(rng, 3, 5)
    x_t = 0.8 * x0[2] + 0.6 * rng.normal(size=(5, 3))
    two = np.asarray(_exact(x_t, x0[:2], 0.8, 0.6, group="SO3"))
    dropped = np.asarray(
        _exact(x_t, x0, 0.8, 0.6, None, None, np.array([1.0, 1.0, -1e4]), group="SO3")
    )
    np.testing.assert_allclose(dropped, two, atol=1e-12)
    w = np.array([0.1, -2.0, 0.7])
    a = np.asarray(_exact(x_t, x0, 0.8, 0.6, None, None, w, group="SO3"))
    b = np.asarray(_exact(x_t, x0, 0.8, 0.6, None, None, w + 123.0, group="SO3"))
    np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_pure_noise_limit():
    """alpha = 0: every weight is equal, so phi_G is the group average of the bank:
    0 for rotation groups, the bank mean for the trivial group."""
    rng = np.random.default_rng(23)
    x0 = _bank(rng, 3, 4) + 1.0
    x_t = rng.normal(size=(4, 3))
    for group in ("O3", "SO3"):
        np.testing.assert_allclose(
            np.asarray(_exact(x_t, x0, 0.0, 1.0, group=group)), 0.0, atol=1e-14
        )
    np.testing.assert_allclose(
        np.asarray(_exact(x_t, x0, 0.0, 1.0, group="trivial")), x0.mean(0), atol=1e-14
    )


def test_vmap_matches_single_calls():
    rng = np.random.default_rng(29)
    b, n = 4, 6
    x0 = jnp.float32(rng.normal(size=(b, 1, n, 3)))
    x_t = jnp.float32(rng.normal(size=(b, n, 3)))
    alpha, sigma = jnp.float32([0.9, 0.7, 0.5, 0.1]), jnp.float32([0.44, 0.71, 0.87, 0.99])
    mask = jnp.float32(np.arange(n) < 5) * jnp.ones((b, 1))
    batched = jax.jit(
        jax.vmap(lambda a, b, c, d, e: symmetrised_target_exact(a, b, c, d, group="O3", mask=e))
    )(x_t, x0, alpha, sigma, mask)
    for i in range(b):
        single = _exact(x_t[i], x0[i], alpha[i], sigma[i], mask[i], group="O3")
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(x_t=np.zeros((2, 4, 3))), "x_t must be one noisy point cloud"),
        (dict(x0=np.zeros((4, 3))), r"x0\[None\]"),
        (dict(x0=np.zeros((1, 5, 3))), "does not match x_t"),
        (dict(mask=np.ones(5)), "mask must have shape"),
        (dict(group="SE3"), "Unknown group 'SE3'"),
        (dict(group="O2"), "acts on 2-dimensional points"),
        (dict(group=np.eye(2)[None]), r"shape \[K, d, d\] with d = 3"),
        (dict(permutations=np.zeros((2, 5), int)), "permutations must be an integer array"),
        (dict(permutations=np.zeros((2, 4))), "must be integers"),
        (dict(bank_log_weights=np.zeros(3)), "bank_log_weights must have shape"),
        (dict(alpha=np.ones(3)), "alpha must be a scalar"),
    ],
)
def test_clear_errors(kwargs, match):
    args = dict(x_t=np.zeros((4, 3)), x0=np.zeros((2, 4, 3)), alpha=0.5, sigma=0.5)
    args.update(kwargs)
    group = args.pop("group", "O3")
    rest = {k: args.pop(k) for k in ("mask", "permutations", "bank_log_weights") if k in args}
    with pytest.raises(ValueError, match=match):
        symmetrised_target_exact(**args, group=group, **rest)


def test_o3_with_2d_data_is_rejected():
    with pytest.raises(ValueError, match="acts on 3-dimensional points"):
        symmetrised_target_exact(np.zeros((4, 2)), np.zeros((1, 4, 2)), 0.5, 0.5, group="O3")
