import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.targets.finite import finite_group_target, gaussian_log_kernel

pytestmark = pytest.mark.usefixtures("x64")


def _reference(x_t, x0, alpha, sigma, matrices, perms, mask, log_w):
    """Direct loop over every (p, k, m) with numpy; an independent posterior mean."""
    terms, logits = [], []
    for p in perms:
        for g in matrices:
            for m, x in enumerate(x0):
                gx = (x[p] * mask[:, None]) @ g.T
                logits.append(-np.sum((x_t - alpha * gx) ** 2) / (2 * sigma**2) + log_w[m])
                terms.append(gx)
    logits = np.array(logits)
    w = np.exp(logits - logits.max())
    return np.einsum("b,bnd->nd", w / w.sum(), np.array(terms)) * mask[:, None]


def test_gaussian_log_kernel_formula():
    rng = np.random.default_rng(0)
    x_t, gx0 = rng.normal(size=(4, 2)), rng.normal(size=(5, 4, 2))
    got = gaussian_log_kernel(jnp.asarray(x_t), jnp.asarray(gx0), 0.7, 0.3)
    want = -np.sum((x_t - 0.7 * gx0) ** 2, axis=(-2, -1)) / (2 * 0.09)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


def test_finite_group_target_against_enumeration():
    rng = np.random.default_rng(1)
    n, d = 4, 2
    x_t = rng.normal(size=(n, d))
    x0 = rng.normal(size=(3, n, d))
    mask = np.array([1.0, 1.0, 1.0, 0.0])
    x_t[3] = x0[:, 3] = 0.0
    c, s = np.cos(0.4), np.sin(0.4)
    matrices = np.stack([np.eye(2), np.array([[c, -s], [s, c]]), np.diag([1.0, -1.0])])
    perms = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [2, 1, 0, 3]])
    log_w = np.log(np.array([0.2, 0.5, 0.3]))
    got = finite_group_target(
        x_t, x0, 0.8, 0.6, matrices=matrices, mask=mask, permutations=perms, bank_log_weights=log_w
    )
    want = _reference(x_t, x0, 0.8, 0.6, matrices, perms, mask, log_w)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


def test_finite_group_target_identity_group_defaults():
    rng = np.random.default_rng(2)
    x_t, x0 = rng.normal(size=(3, 3)), rng.normal(size=(2, 3, 3))
    got = finite_group_target(x_t, x0, 0.9, 0.4)
    want = _reference(x_t, x0, 0.9, 0.4, [np.eye(3)], [np.arange(3)], np.ones(3), np.zeros(2))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)


@pytest.mark.allow_nonfinite
def test_finite_group_target_rejects_bad_matrices():
    x_t, x0 = np.zeros((3, 2)), np.ones((1, 3, 2))
    with pytest.raises(ValueError, match=r"\[K, d, d\] with d = 2"):
        finite_group_target(x_t, x0, 1.0, 1.0, matrices=np.eye(3)[None])
    with pytest.raises(ValueError):
        finite_group_target(x_t, x0, 1.0, 1.0, matrices=2.0 * np.eye(2)[None])
    under_jit = jax.jit(lambda m: finite_group_target(x_t, x0, 1.0, 1.0, matrices=m))
    assert np.all(np.isnan(np.asarray(under_jit(2.0 * jnp.eye(2)[None]))))
