"""recursive_gamma (SymDiff, paper 002, eq. 7 and Algorithm 1 line 4).

- `R = R0 . qr(f(R0^T . x, eta))` is checked exactly with an f for which R is
  deterministic (f(x') = x'^T B gives R = qr(x^T B): the R0 cancels only with
  the stated convention R0^T . x = x @ R0);
- in distribution: gamma is S_N-invariant and O(3)-equivariant (R(g . x) ~ g R(x))
  for an S_N-invariant f that is not O(3)-equivariant, and so is the
  symmetrised kernel; without R0, or with an f that is not S_N-invariant, the
  assertion fails;
- gradients w.r.t. f's parameters flow through QR and match finite differences.

False-alarm rate: every `assert_stochastically_equivariant` call runs at
alpha = 1e-3 (exact permutation tests, Bonferroni over 3 group elements), so an
equivariant kernel fails a call with probability at most 1e-3 for a random
seed; the seeds are fixed.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.groups import qr_to_orthogonal
from symdiff_jax.symmetrise import recursive_gamma, symmetrise
from symdiff_jax.testing import act_on_rotation, assert_stochastically_equivariant
from tests.symmetrise.clouds import ALPHA, MASK, cloud, linear_kernel


def init_params(key, hidden=8, noise_dim=3):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "v": jax.random.normal(k1, (3 + noise_dim + 3, hidden)) / 3.0,
        "w": jax.random.normal(k2, (9, hidden)) / 3.0,
        "b": jnp.asarray([[1.0, 0.5, 0.0], [0.0, 2.0, 0.3], [0.2, 0.0, 0.5]])
        + 0.1 * jax.random.normal(k3, (3, 3)),
    }


def invariant_f(params):
    """f(x, eta) = W (masked sum_i tanh([x_i, eta_i, x_i^2] V)) + B: S_N-invariant, not O(3)."""

    def f(x, eta, mask=None):
        m = jnp.ones(x.shape[:-1], x.dtype) if mask is None else mask
        features = jnp.concatenate([x, eta, x**2], axis=-1)
        pooled = jnp.sum(m[..., None] * jnp.tanh(features @ params["v"]), axis=-2)
        return (params["w"] @ pooled).reshape(3, 3) + params["b"]

    return f


PARAMS = init_params(jax.random.key(42))


def test_deterministic_canonicalisation_exposes_the_convention(x64):
    """f(x', eta) = x'^T B makes R = R0 qr(R0^T x^T B) = qr(x^T B) for every R0."""
    b = jax.random.normal(jax.random.key(0), (6, 3))
    gamma = recursive_gamma(lambda x, eta, mask=None: x.T @ b)
    x = cloud(1)
    expected = qr_to_orthogonal(x.T @ b)
    for seed in range(3):
        np.testing.assert_allclose(gamma(jax.random.key(seed), x, mask=MASK), expected, atol=1e-10)
    special = recursive_gamma(lambda x, eta, mask=None: x.T @ b, group="SO3")
    np.testing.assert_allclose(
        special(jax.random.key(3), x), qr_to_orthogonal(x.T @ b, special=True), atol=1e-10
    )


def test_noise_is_com_free_and_arguments_pass_through():
    seen = {}

    def f(x, eta, t, mask=None):
        seen.update(eta=eta, t=t, mask=mask)
        return jnp.eye(3) + t

    r = recursive_gamma(f, noise_dim=4)(jax.random.key(0), cloud(), 0.25, mask=MASK)
    eta = np.asarray(seen["eta"])
    assert eta.shape == (6, 4) and seen["t"] == 0.25 and seen["mask"] is MASK
    np.testing.assert_array_equal(eta[np.asarray(MASK) == 0], 0.0)
    np.testing.assert_allclose(eta.sum(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
    flat = recursive_gamma(lambda x, eta: jnp.arange(9.0) + 1.0)(jax.random.key(0), cloud())
    assert flat.shape == (3, 3)


def test_recursive_gamma_is_equivariant_in_distribution():
    """gamma(g . x) ~ R_g gamma(x) and gamma(p . x) ~ gamma(x), f S_N-invariant only."""
    gamma = recursive_gamma(invariant_f(PARAMS))
    assert_stochastically_equivariant(
        gamma, jax.random.key(0), cloud(), mask=MASK, out_act=act_on_rotation, alpha=ALPHA
    )


def test_without_r0_is_not_equivariant():
    """gamma_1 alone, R = qr(f(x, eta)), fails: the Haar R0 is what makes gamma equivariant."""
    f = invariant_f(PARAMS)

    def gamma_1(key, x, mask=None):
        eta = jax.random.normal(key, x.shape[:-1] + (3,)) * mask[:, None]
        return qr_to_orthogonal(f(x, eta - eta.sum(0) / mask.sum() * mask[:, None], mask=mask))

    with pytest.raises(AssertionError):
        assert_stochastically_equivariant(
            gamma_1, jax.random.key(0), cloud(), mask=MASK, out_act=act_on_rotation, alpha=ALPHA
        )


def test_f_that_is_not_permutation_invariant_breaks_s_n_only():
    """f(x') = x'^T B with fixed per-atom weights B: O(3)-equivariant, not S_N-invariant."""
    b = jax.random.normal(jax.random.key(0), (6, 3))
    gamma = recursive_gamma(lambda x, eta, mask=None: x.T @ b + 0.3 * eta.T @ b)
    check = functools.partial(
        assert_stochastically_equivariant,
        gamma,
        jax.random.key(1),
        cloud(),
        mask=MASK,
        out_act=act_on_rotation,
        alpha=ALPHA,
    )
    check(permutations=False)  # O(3) alone
    with pytest.raises(AssertionError):
        check(group=None)  # S_N alone


def test_symmetrised_kernel_with_recursive_gamma_passes():
    """Theorem 1 with the learned base case: sym_gamma(k) is S_N x O(3)-equivariant."""
    kernel = symmetrise(linear_kernel, recursive_gamma(invariant_f(PARAMS)))
    assert_stochastically_equivariant(kernel, jax.random.key(3), cloud(), mask=MASK, alpha=ALPHA)


def _loss(params, key, x):
    kernel = symmetrise(linear_kernel, recursive_gamma(invariant_f(params)))
    y = kernel(key, x, mask=MASK)
    return jnp.sum(jnp.sin(y) * jnp.arange(1.0, 19.0).reshape(6, 3))


def test_gradients_flow_and_match_finite_differences(x64):
    """Reparametrised gradients w.r.t. f's parameters, against central differences (float64)."""
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), PARAMS)
    x = cloud(4).astype(jnp.float64)
    key = jax.random.key(7)
    loss = jax.jit(_loss)
    grads = jax.grad(loss)(params, key, x)
    for name, g in grads.items():
        assert np.isfinite(np.asarray(g)).all()
        assert np.abs(np.asarray(g)).max() > 1e-6, f"no gradient reaches {name}"
    rng = np.random.default_rng(0)
    h = 1e-6
    for _ in range(3):
        direction = {k: jnp.asarray(rng.normal(size=v.shape)) for k, v in params.items()}
        plus = {k: params[k] + h * direction[k] for k in params}
        minus = {k: params[k] - h * direction[k] for k in params}
        fd = (loss(plus, key, x) - loss(minus, key, x)) / (2 * h)
        analytic = sum(jnp.sum(grads[k] * direction[k]) for k in params)
        np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-8)


def test_errors():
    with pytest.raises(ValueError, match="Unknown group"):
        recursive_gamma(lambda x, eta: jnp.eye(3), group="U1")
    with pytest.raises(ValueError, match="raw matrix"):
        recursive_gamma(lambda x, eta: jnp.ones(4))(jax.random.key(0), cloud())
