"""EGNN: exact E(d) x S_N equivariance, padding, options and errors.

Group elements come from independent references (scipy rotations, numpy
permutations and Householder reflections), not from the library.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.spatial.transform import Rotation

from symdiff_jax.models.egnn import EGNN

OPTIONS = [
    dict(),
    dict(attention=True, tanh=True, coords_range=15.0),
    dict(aggregation="mean", inv_sublayers=2, norm_constant=0.0),
    dict(aggregation="sum", normalization_factor=100.0, condition_time=False),
]


def _model(dim_h=3, seed=0, **kw):
    """A small EGNN, returned as a jitted function of (x, h, mask, t)."""
    kw = {"hidden": 16, "num_layers": 3, **kw}
    model = EGNN(dim_h, rngs=nnx.Rngs(seed), **kw)
    # Scale the near-zero coordinate heads up so the coordinate path is exercised.
    for block in model.blocks:
        block.update.lin3.kernel[...] = block.update.lin3.kernel[...] * 1e3
    graphdef, params = nnx.split(model, nnx.Param)
    return lambda x, h, mask, t: _apply(graphdef, params, x, h, mask, t)


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, params, x, h, mask, t):
    return nnx.merge(graphdef, params)(x, h, mask, t)


def _inputs(rng, batch=3, n=6, d=3, f=3, pad=True):
    x = rng.normal(size=(batch, n, d))
    h = rng.normal(size=(batch, n, f))
    mask = np.ones((batch, n))
    if pad:
        mask[0, -2:] = 0.0
        mask[1, -1] = 0.0
    x, h = x * mask[..., None], h * mask[..., None]
    t = rng.uniform(size=(batch,))
    return x, h, mask, t


def _orthogonal(rng, d, reflect):
    if d == 3:
        r = Rotation.random(random_state=rng).as_matrix()
    else:
        a = rng.uniform(0, 2 * np.pi)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    if reflect:
        n = rng.normal(size=d)
        n /= np.linalg.norm(n)
        r = (np.eye(d) - 2 * np.outer(n, n)) @ r
    return r


def _check_e_equivariance(model, x, h, mask, t, rot, shift, atol):
    """f(x R^T + b) == (f(x) R^T + b, h_out) on real atoms; zeros on padding."""
    m = mask[..., None]
    x_out, h_out = model(jnp.asarray(x), jnp.asarray(h), jnp.asarray(mask), jnp.asarray(t))
    x_g = (x @ rot.T + shift) * m
    x_out_g, h_out_g = model(jnp.asarray(x_g), jnp.asarray(h), jnp.asarray(mask), jnp.asarray(t))
    np.testing.assert_allclose(
        np.asarray(x_out_g), (np.asarray(x_out) @ rot.T + shift) * m, atol=atol
    )
    np.testing.assert_allclose(np.asarray(h_out_g), np.asarray(h_out), atol=atol)


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("d", [2, 3])
def test_e_d_equivariance(x64, options, d):
    """Rotations and reflections (det -1), with translations, in 2D and 3D."""
    rng = np.random.default_rng(d)
    model = _model(**options)
    x, h, mask, t = _inputs(rng, d=d)
    for reflect in (False, True):
        rot = _orthogonal(rng, d, reflect)
        assert np.isclose(np.linalg.det(rot), -1.0 if reflect else 1.0)
        shift = rng.normal(size=(d,)) * 3.0
        _check_e_equivariance(model, x, h, mask, t, rot, shift, atol=1e-10)


def test_e_d_equivariance_float32():
    rng = np.random.default_rng(0)
    model = _model(attention=True, tanh=True)
    x, h, mask, t = _inputs(rng, d=3)
    rot = _orthogonal(rng, 3, reflect=True)
    _check_e_equivariance(model, x, h, mask, t, rot, rng.normal(size=3), atol=2e-5)


def test_equivariance_check_detects_a_broken_model(x64):
    """The check itself can fail: a model that adds a fixed vector is not rotation-equivariant."""
    rng = np.random.default_rng(1)
    model = _model()
    x, h, mask, t = _inputs(rng)

    class Broken:
        def __call__(self, *args):
            x_out, h_out = model(*args)
            return x_out + jnp.array([0.1, 0.0, 0.0]), h_out

    rot = _orthogonal(rng, 3, reflect=False)
    with pytest.raises(AssertionError):
        _check_e_equivariance(Broken(), x, h, mask, t, rot, np.zeros(3), atol=1e-8)


@pytest.mark.parametrize("options", OPTIONS)
def test_permutation_equivariance(x64, options):
    rng = np.random.default_rng(2)
    model = _model(**options)
    x, h, mask, t = _inputs(rng)
    x_out, h_out = model(jnp.asarray(x), jnp.asarray(h), jnp.asarray(mask), jnp.asarray(t))
    for b in range(x.shape[0]):
        perm = rng.permutation(x.shape[1])  # moves padded slots too
        xp, hp, mp = x[b, perm], h[b, perm], mask[b, perm]
        x_out_p, h_out_p = model(jnp.asarray(xp), jnp.asarray(hp), jnp.asarray(mp), t[b])
        np.testing.assert_allclose(np.asarray(x_out_p), np.asarray(x_out[b])[perm], atol=1e-10)
        np.testing.assert_allclose(np.asarray(h_out_p), np.asarray(h_out[b])[perm], atol=1e-10)


@pytest.mark.parametrize("options", OPTIONS)
def test_padding_is_invisible(x64, options):
    """Extra padded atoms with garbage coordinates change nothing; padded outputs are 0."""
    rng = np.random.default_rng(3)
    model = _model(**options)
    x, h, mask, t = _inputs(rng, batch=2, n=4, pad=False)
    x_out, h_out = model(jnp.asarray(x), jnp.asarray(h), jnp.asarray(mask), jnp.asarray(t))
    xp = np.concatenate([x, rng.normal(size=(2, 3, 3)) * 5], axis=1)
    hp = np.concatenate([h, rng.normal(size=(2, 3, 3))], axis=1)
    mp = np.concatenate([mask, np.zeros((2, 3))], axis=1)
    x_out_p, h_out_p = model(jnp.asarray(xp), jnp.asarray(hp), jnp.asarray(mp), jnp.asarray(t))
    np.testing.assert_allclose(np.asarray(x_out_p[:, :4]), np.asarray(x_out), atol=1e-10)
    np.testing.assert_allclose(np.asarray(h_out_p[:, :4]), np.asarray(h_out), atol=1e-10)
    assert np.all(np.asarray(x_out_p[:, 4:]) == 0.0)
    assert np.all(np.asarray(h_out_p[:, 4:]) == 0.0)


def test_unbatched_call_matches_batched():
    rng = np.random.default_rng(4)
    model = _model(attention=True)
    x, h, mask, t = _inputs(rng)
    x_out, h_out = model(jnp.asarray(x), jnp.asarray(h), jnp.asarray(mask), jnp.asarray(t))
    x1, h1 = model(jnp.asarray(x[1]), jnp.asarray(h[1]), jnp.asarray(mask[1]), t[1])
    np.testing.assert_allclose(np.asarray(x1), np.asarray(x_out[1]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(h1), np.asarray(h_out[1]), rtol=1e-5, atol=1e-5)


def test_time_and_features_reach_the_output():
    """The time and the features change the coordinates; gradients reach every parameter."""
    rng = np.random.default_rng(5)
    model = _model(attention=True, tanh=True, out_features=2)
    x, h, mask, t = (jnp.asarray(a) for a in _inputs(rng, pad=False))
    x_a, h_a = model(x, h, mask, t)
    x_b, _ = model(x, h, mask, t + 0.5)
    x_c, _ = model(x, h + 1.0, mask, t)
    assert h_a.shape == (3, 6, 2)
    assert float(jnp.abs(x_a - x_b).max()) > 1e-4
    assert float(jnp.abs(x_a - x_c).max()) > 1e-4

    module = EGNN(3, hidden=16, num_layers=2, attention=True, tanh=True, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(module, nnx.Param)

    @jax.jit
    def grads(p):
        def loss(p):
            xo, ho = nnx.merge(graphdef, p)(x, h, mask, t)
            return jnp.sum(xo**2) + jnp.sum(ho**2)

        return jax.grad(loss)(p)

    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads(params)))


def test_initial_network_is_close_to_identity_on_coordinates():
    rng = np.random.default_rng(6)
    model = EGNN(3, hidden=16, num_layers=3, rngs=nnx.Rngs(0))
    x, h, mask, t = (jnp.asarray(a, jnp.float32) for a in _inputs(rng))
    x_out, _ = model(x, h, mask, t)
    assert float(jnp.abs(x_out - x).max()) < 0.1


def test_jit_and_vmap_compatible():
    rng = np.random.default_rng(7)
    module = EGNN(3, hidden=16, num_layers=2, rngs=nnx.Rngs(0))
    x, h, mask, t = (jnp.asarray(a, jnp.float32) for a in _inputs(rng))
    graphdef, params = nnx.split(module, nnx.Param)

    @jax.jit
    def apply(p, x, h, mask, t):
        return nnx.merge(graphdef, p)(x, h, mask, t)

    x_out, _ = apply(params, x, h, mask, t)
    x_ref, _ = module(x, h, mask, t)
    np.testing.assert_allclose(np.asarray(x_out), np.asarray(x_ref), atol=1e-5)
    x_v, _ = jax.jit(jax.vmap(lambda a, b, c, s: apply(params, a, b, c, s)))(x, h, mask, t)
    np.testing.assert_allclose(np.asarray(x_v), np.asarray(x_ref), atol=1e-5)


def test_errors_speak_to_the_user():
    with pytest.raises(ValueError, match="aggregation"):
        EGNN(3, aggregation="max", rngs=nnx.Rngs(0))
    model = EGNN(3, hidden=8, num_layers=1, rngs=nnx.Rngs(0))
    x = jnp.zeros((2, 4, 3))
    with pytest.raises(ValueError, match="h must have shape"):
        model(x, jnp.zeros((2, 4, 5)), None, jnp.zeros(2))
    with pytest.raises(ValueError, match="mask"):
        model(x, jnp.zeros((2, 4, 3)), jnp.ones((2, 5)), jnp.zeros(2))
    with pytest.raises(ValueError, match="time"):
        model(x, jnp.zeros((2, 4, 3)), None, None)


def test_library_equivariance_assertion(key):
    """The same property through symdiff_jax.testing (state (x, h), mask with padding)."""
    from symdiff_jax.testing import assert_equivariant

    rng = np.random.default_rng(8)
    model = _model(attention=True, tanh=True)
    x, h, mask, t = _inputs(rng, batch=2, n=5)
    x, h, mask = (jnp.asarray(a[0], jnp.float32) for a in (x, h, mask))  # 3 real atoms

    def fn(state, t, mask):
        return model(state[0], state[1], mask, t)

    assert_equivariant(fn, key, (x, h), jnp.float32(t[0]), group="O3", mask=mask, atol=1e-4)


def test_edge_linear_equals_linear_of_the_concatenation(x64):
    from symdiff_jax.models.egnn import edge_linear

    rng = np.random.default_rng(9)
    lin = nnx.Linear(2 * 4 + 2, 5, rngs=nnx.Rngs(0))
    h = jnp.asarray(rng.normal(size=(2, 3, 4)))
    e = jnp.asarray(rng.normal(size=(2, 3, 3, 2)))
    h_i = jnp.broadcast_to(h[:, :, None, :], (2, 3, 3, 4))
    h_j = jnp.broadcast_to(h[:, None, :, :], (2, 3, 3, 4))
    ref = lin(jnp.concatenate([h_i, h_j, e], axis=-1))
    np.testing.assert_allclose(np.asarray(edge_linear(lin, h, e)), np.asarray(ref), atol=1e-6)
