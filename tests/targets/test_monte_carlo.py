"""symmetrised_target_mc (paper 000, Algorithm 1): convergence to the exact target."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.targets import symmetrised_target_exact, symmetrised_target_mc


def _problem(seed=0, n=5, m=2, d=3):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(m, n, d))
    x0 -= x0.mean(1, keepdims=True)
    alpha, sigma = 0.6, 0.8
    x_t = alpha * x0[0][::-1] + sigma * rng.normal(size=(n, d))
    return jnp.float32(x_t), jnp.float32(x0), alpha, sigma


_SIZES = (64, 1024, 16384)


@functools.partial(jax.jit, static_argnames=("group", "num_samples"))
def _mc_error(keys, x_t, x0, alpha, sigma, permutations, exact, group, num_samples):
    """RMS error over keys of the MC estimate with K = num_samples.

    Keys run one after another (`lax.map`), which keeps the compiled graph small.
    """
    est = jax.lax.map(
        lambda key: symmetrised_target_mc(
            key,
            x_t,
            x0,
            alpha,
            sigma,
            num_samples=num_samples,
            group=group,
            permutations=permutations,
        ),
        keys,
    )
    return jnp.sqrt(jnp.mean(jnp.sum((est - exact) ** 2, axis=(1, 2))))


def _mc_errors(keys, x_t, x0, alpha, sigma, permutations, exact, group):
    """RMS error over keys of the MC estimate for each K in _SIZES."""
    return jnp.stack(
        [_mc_error(keys, x_t, x0, alpha, sigma, permutations, exact, group, k) for k in _SIZES]
    )


@pytest.mark.parametrize("group", ["O3"])
def test_error_shrinks_like_one_over_sqrt_k(group):
    """RMS error over 16 keys for K = 64, 1024, 16384: each 16x step must shrink it by
    a factor in [1/8, 1/2] (1/4 expected). The band is > 3 standard deviations of the
    log-ratio of two 16-key RMS estimates (false-alarm rate < 1e-3)."""
    x_t, x0, alpha, sigma = _problem()
    perms = jnp.asarray([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4]])
    exact = symmetrised_target_exact(x_t, x0, alpha, sigma, group=group, permutations=perms)
    keys = jax.random.split(jax.random.key(0), 16)
    errs = np.asarray(_mc_errors(keys, x_t, x0, alpha, sigma, perms, exact, group))
    ratios = errs[1:] / errs[:-1]
    assert np.all((ratios > 1 / 8) & (ratios < 1 / 2)), (errs, ratios)
    assert errs[-1] / float(jnp.linalg.norm(exact)) < 5e-2


def test_finite_group_sampling_converges_to_enumeration():
    """Uniform sampling among the listed elements (here the 4-element Klein group of
    sign flips, times S_3 on atoms 0..2) converges to exact enumeration."""
    x_t, x0, alpha, sigma = _problem(seed=1)
    mats = jnp.float32([np.diag(v) for v in ([1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1])])
    perms = jnp.asarray([list(p) + [3, 4] for p in itertools.permutations(range(3))])
    exact = symmetrised_target_exact(x_t, x0, alpha, sigma, group=mats, permutations=perms)
    est = jax.jit(
        lambda key: symmetrised_target_mc(
            key, x_t, x0, alpha, sigma, num_samples=50_000, group=mats, permutations=perms
        )
    )(jax.random.key(1))
    # 24 equally likely group elements, 50k draws: relative error ~ 1/sqrt(2000)
    assert float(jnp.linalg.norm(est - exact) / jnp.linalg.norm(exact)) < 3e-2


def test_trivial_group_is_exact_and_masked():
    x_t, x0, alpha, sigma = _problem(seed=2, m=4)
    mask = jnp.float32([1, 1, 1, 1, 0])
    w = jnp.float32([0.0, -1.0, 0.5, 2.0])
    mc = symmetrised_target_mc(
        jax.random.key(0),
        x_t,
        x0,
        alpha,
        sigma,
        num_samples=3,
        group="trivial",
        mask=mask,
        bank_log_weights=w,
    )
    ex = symmetrised_target_exact(
        x_t, x0, alpha, sigma, group="trivial", mask=mask, bank_log_weights=w
    )
    np.testing.assert_allclose(np.asarray(mc), np.asarray(ex), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mc)[4], 0.0)


def test_so2_sampling_matches_exact():
    x_t, x0, alpha, sigma = _problem(seed=3, d=2)
    exact = symmetrised_target_exact(x_t, x0, alpha, sigma, group="O2")
    est = jax.jit(
        lambda key: symmetrised_target_mc(
            key, x_t, x0, alpha, sigma, num_samples=100_000, group="O2"
        )
    )(jax.random.key(2))
    assert float(jnp.linalg.norm(est - exact) / jnp.linalg.norm(exact)) < 2e-2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_samples=0), "num_samples must be a positive Python int"),
        (dict(num_samples=10.0), "num_samples must be a positive Python int"),
        (dict(group="E3"), "Unknown group"),
        (dict(group="SO2"), "acts on 2-dimensional points"),
        (dict(mask=jnp.ones(3)), "mask must have shape"),
    ],
)
def test_clear_errors(kwargs, match):
    args = dict(num_samples=8, group="O3")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        symmetrised_target_mc(
            jax.random.key(0), jnp.zeros((4, 3)), jnp.zeros((1, 4, 3)), 0.5, 0.5, **args
        )
