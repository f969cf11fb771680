"""NaN, Inf and other bad values at the public entry points of groups, symmetrise, targets
and the diffusion schedules.

Each case calls one entry point with one bad input twice: with concrete arrays, where the
contract is a ValueError in one line naming the bad value, and under `jax.jit`, where it is
a NaN (or, where arithmetic propagates it, Inf) result: never a hang, never finite garbage. A few inputs have no concrete check by
contract (a decomposition of a non-finite matrix, a finite input that overflows inside):
they give NaN both ways. Shape-like mistakes (a negative sample shape, a kernel returning
the wrong shape) are static, so they raise under jit too.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax import diffusion, groups, symmetrise, targets

ERROR, NAN = "clear error", "NaN or Inf"

KEY = jax.random.key(0)
X = jax.random.normal(jax.random.key(1), (5, 3))
X0 = jax.random.normal(jax.random.key(2), (1, 5, 3))
ROT = groups.haar_so3(jax.random.key(3))
MASK = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])
PERMS = jnp.array([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4]])
Z2 = jnp.stack([jnp.eye(3), jnp.diag(jnp.array([1.0, 1.0, -1.0]))])
NOT_ORTHOGONAL = jnp.stack([jnp.eye(3), 1.1 * jnp.eye(3)])


def nan_at(a, index=(1, 1)):
    return jnp.asarray(a).at[index].set(jnp.nan)


def inf_at(a, index=(1, 1)):
    return jnp.asarray(a).at[index].set(jnp.inf)


def exact(x_t=X, x0=X0, alpha=0.9, sigma=0.3, **kw):
    return targets.symmetrised_target_exact(x_t, x0, alpha, sigma, **kw)


def mc(x_t=X, x0=X0, alpha=0.9, sigma=0.3, **kw):
    return targets.symmetrised_target_mc(KEY, x_t, x0, alpha, sigma, num_samples=4, **kw)


def finite(x_t=X, x0=X0, alpha=0.9, sigma=0.3, **kw):
    return targets.finite_group_target(x_t, x0, alpha, sigma, **kw)


def sym(g):
    """A symmetrised identity kernel whose gamma returns `g`."""
    kernel = symmetrise.symmetrise(symmetrise.as_kernel(lambda x: x), lambda key, x: g)
    return kernel(KEY, X)


def wrong_shape_kernel(x):
    kernel = symmetrise.symmetrise(
        symmetrise.as_kernel(lambda y: y[..., :2]), symmetrise.haar_gamma("O3")
    )
    return kernel(KEY, x)


def exact_permutations(perms):
    """A case: the exact target with the (traced under jit) atom permutations `perms`."""
    return (lambda p: exact(permutations=p), (perms,), ERROR, NAN)


POLY = diffusion.polynomial_schedule(10)
LINEAR = diffusion.linear_schedule()

# name -> (function, arguments, expected outcome with concrete arrays, under jit)
CASES = {
    "groups.rotate x NaN": (groups.rotate, (nan_at(X), ROT), ERROR, NAN),
    "groups.rotate R Inf": (groups.rotate, (X, inf_at(ROT)), ERROR, NAN),
    "groups.remove_com x Inf": (groups.remove_com, (inf_at(X), MASK), ERROR, NAN),
    "groups.remove_com fractional mask": (groups.remove_com, (X, MASK.at[0].set(0.5)), ERROR, NAN),
    "groups.masked_mean fractional mask": (
        groups.masked_mean,
        (X, MASK.at[4].set(0.2)),
        ERROR,
        NAN,
    ),
    "groups.permute index out of range": (
        groups.permute,
        (X, jnp.array([0, 1, 2, 3, 5])),
        ERROR,
        NAN,
    ),
    "groups.permute negative index": (groups.permute, (X, jnp.array([0, 1, 2, 3, -1])), ERROR, NAN),
    "groups.permute repeated index": (groups.permute, (X, jnp.array([0, 0, 2, 3, 4])), ERROR, NAN),
    "groups.reflection zero normal": (groups.reflection, (jnp.zeros(3),), ERROR, NAN),
    "groups.reflection NaN normal": (
        groups.reflection,
        (jnp.array([1.0, jnp.nan, 0.0]),),
        ERROR,
        NAN,
    ),
    "groups.qr_to_orthogonal Inf": (groups.qr_to_orthogonal, (inf_at(ROT),), NAN, NAN),
    "groups.qr_to_orthogonal NaN": (groups.qr_to_orthogonal, (nan_at(ROT),), NAN, NAN),
    "symmetrise gamma not orthogonal": (sym, (2.0 * ROT,), ERROR, NAN),
    "symmetrise gamma NaN": (sym, (nan_at(ROT),), ERROR, NAN),
    "targets.proper_svd Inf": (targets.proper_svd, (inf_at(ROT, (0, 0)),), NAN, NAN),
    "targets.expected_rotation Inf": (targets.expected_rotation, (inf_at(ROT, (0, 0)),), NAN, NAN),
    "targets.exact x_t Inf": (exact, (inf_at(X),), ERROR, NAN),
    "targets.exact x_t NaN": (exact, (nan_at(X),), ERROR, NAN),
    "targets.exact x0 Inf": (exact, (X, inf_at(X0, (0, 1, 1))), ERROR, NAN),
    "targets.exact sigma < 0": (exact, (X, X0, 0.9, -0.3), ERROR, NAN),
    "targets.exact sigma = 0": (exact, (X, X0, 0.9, 0.0), ERROR, NAN),
    "targets.exact sigma NaN": (exact, (X, X0, 0.9, jnp.nan), ERROR, NAN),
    "targets.exact alpha Inf": (exact, (X, X0, jnp.inf, 0.3), ERROR, NAN),
    "targets.exact overflow to Inf inside": (
        exact,
        (
            jnp.array([[1e20, 1.0, 2.0], [0.5, 0.3, 0.1]]),
            jnp.array([[[1e20, 1.0, 2.0], [0.5, 0.3, 0.1]]]),
            1.0,
            1.0,
        ),
        NAN,
        NAN,
    ),
    "targets.exact SO2 x_t Inf": (
        functools.partial(exact, group="SO2"),
        (inf_at(X[:, :2]), X0[..., :2]),
        ERROR,
        NAN,
    ),
    "targets.exact fractional mask": (lambda m: exact(mask=m), (MASK.at[0].set(0.5),), ERROR, NAN),
    "targets.exact permutation out of range": exact_permutations(PERMS.at[1, 4].set(7)),
    "targets.exact permutation negative": exact_permutations(PERMS.at[1, 4].set(-1)),
    "targets.exact permutation repeated": exact_permutations(PERMS.at[1, 1].set(1)),
    "targets.exact non-orthogonal group": (lambda g: exact(group=g), (NOT_ORTHOGONAL,), ERROR, NAN),
    "targets.exact bank_log_weights NaN": (
        lambda w: exact(bank_log_weights=w),
        (jnp.array([jnp.nan]),),
        ERROR,
        NAN,
    ),
    "targets.mc x_t NaN": (mc, (nan_at(X),), ERROR, NAN),
    "targets.mc sigma < 0": (mc, (X, X0, 0.9, -0.3), ERROR, NAN),
    "targets.mc non-orthogonal group": (lambda g: mc(group=g), (NOT_ORTHOGONAL,), ERROR, NAN),
    "targets.mc permutation out of range": (
        lambda p: mc(permutations=p),
        (PERMS.at[1, 4].set(9),),
        ERROR,
        NAN,
    ),
    "targets.finite non-orthogonal matrices": (
        lambda g: finite(matrices=g),
        (NOT_ORTHOGONAL,),
        ERROR,
        NAN,
    ),
    "targets.finite sigma = 0": (lambda s: finite(sigma=s, matrices=Z2), (0.0,), ERROR, NAN),
    "targets.finite x0 NaN": (finite, (X, nan_at(X0, (0, 2, 0))), ERROR, NAN),
    "schedules.polynomial alpha(t NaN)": (POLY.alpha, (jnp.array(jnp.nan),), ERROR, NAN),
    "schedules.polynomial sigma(t Inf)": (POLY.sigma, (jnp.array(jnp.inf),), ERROR, NAN),
    "schedules.linear alpha(t NaN)": (LINEAR.alpha, (jnp.array([0.5, jnp.nan]),), ERROR, NAN),
    "schedules.linear alpha(t Inf)": (LINEAR.alpha, (jnp.array(jnp.inf),), ERROR, NAN),
    "schedules.linear snr(t -Inf)": (LINEAR.snr, (jnp.array(-jnp.inf),), ERROR, NAN),
}

# Static mistakes: ValueError with and without jit.
STATIC = {
    "groups.haar_o3 negative shape": (lambda: groups.haar_o3(KEY, (-1,)), "non-negative ints"),
    "groups.haar_orthogonal dim 0": (lambda: groups.haar_orthogonal(KEY, 0), "positive int"),
    "groups.com_free_normal negative shape": (
        lambda: groups.com_free_normal(KEY, (2, -3, 3)),
        "non-negative ints",
    ),
    "symmetrise kernel returns wrong shape": (lambda: wrong_shape_kernel(X), "the kernel returned"),
    "schedules.linear gamma_min -Inf": (
        lambda: diffusion.linear_schedule(-jnp.inf, 5.0),
        "must be finite",
    ),
    "schedules.polynomial precision NaN": (
        lambda: diffusion.polynomial_schedule(10, precision=float("nan")),
        "precision",
    ),
    "schedules.cosine s NaN": (lambda: diffusion.cosine_schedule(10, s=float("nan")), "finite"),
}


def outcome(fn, args):
    """'clear error' (one-line ValueError), 'NaN or Inf' in the result, or 'silent garbage'
    (a result that is all finite)."""
    try:
        out = fn(*args)
    except ValueError as err:
        assert "\n" not in str(err), str(err)
        return ERROR
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(out)]
    if any(not np.isfinite(leaf).all() for leaf in leaves if np.issubdtype(leaf.dtype, np.inexact)):
        return NAN
    return "silent garbage"


@pytest.mark.allow_nonfinite
@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_value_concrete(name):
    fn, args, expected, _ = CASES[name]
    assert outcome(fn, args) == expected


@pytest.mark.allow_nonfinite
@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_value_under_jit(name):
    fn, args, _, expected = CASES[name]
    assert outcome(jax.jit(fn), args) == expected


@pytest.mark.allow_nonfinite
@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_mistake_raises_with_and_without_jit(name):
    call, match = STATIC[name]
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    if name.startswith(("groups", "symmetrise")):
        with pytest.raises(ValueError, match=match):
            jax.jit(call)()


def test_valid_inputs_are_unchanged_bit_for_bit(x64):
    """The guards only select: valid inputs give the same bits as the unguarded formulas."""
    del x64
    x = jax.random.normal(jax.random.key(5), (6, 3), jnp.float64)
    x0 = jax.random.normal(jax.random.key(6), (2, 6, 3), jnp.float64)
    F = jnp.einsum("ni,bnj->bij", x, x0)
    usv = targets.proper_svd(F)
    u, s, vh = jnp.linalg.svd(F, full_matrices=False)
    np.testing.assert_array_equal(np.abs(usv.s), np.abs(s))
    np.testing.assert_array_equal(np.abs(usv.U), np.abs(u))
    perm = jnp.array([1, 0, 2, 3, 5, 4])
    np.testing.assert_array_equal(groups.permute(x, perm), x[perm])
