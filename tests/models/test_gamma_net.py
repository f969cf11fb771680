"""GammaNet (f_theta): S_N invariance, padding, sharing, and the law of the full gamma.

Small networks (width 16, 2 blocks) with randomised parameters. The full kernel
`R = R0 qr(f(R0^T x, eta))` is checked for O(3)-equivariance in distribution with the
library's energy-distance two-sample test (false-alarm rate stated per test).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.groups import com_free_normal, qr_to_orthogonal
from symdiff_jax.models.dit import DiT
from symdiff_jax.models.gamma_net import GammaNet
from symdiff_jax.models.parameters import count_params
from symdiff_jax.symmetrise import recursive_gamma
from symdiff_jax.testing import (
    assert_equivariant,
    assert_stochastically_equivariant,
    randomise_parameters,
)
from symdiff_jax.testing.equivariance import act_on_rotation
from symdiff_jax.testing.modules import MASK_LAYOUTS, compiled_call

SMALL = dict(
    hidden=16, depth=2, heads=2, mlp_ratio=4.0, decoder_hidden=8, noise_dims=3, dist_embed=6,
    num_gaussians=5,
)  # fmt: skip


def randomise(module, key, scale=0.25):
    return randomise_parameters(module, key, scale)


def small_gamma(seed=0, compiled=True, **kw):
    model = randomise(GammaNet(**{**SMALL, **kw}, rngs=nnx.Rngs(seed)), jax.random.key(seed + 7))
    return compiled_call(model) if compiled else model


def inputs(seed, n=6, batch=2, mask=None):
    rng = np.random.default_rng(seed)
    m = np.ones((batch, n)) if mask is None else np.broadcast_to(np.asarray(mask), (batch, n))
    x = rng.normal(size=(batch, n, 3)) * 1.5 * m[..., None]
    eta = rng.normal(size=(batch, n, 3)) * m[..., None]
    t = rng.uniform(size=(batch,))
    return tuple(jnp.asarray(a, jnp.float32) for a in (x, eta, t, m))


@pytest.mark.parametrize("layout", sorted(MASK_LAYOUTS))
def test_permutation_invariant(key, layout):
    """Permuting the real atoms of x and eta together leaves A unchanged."""
    f = small_gamma()
    x, eta, t, m = inputs(1, mask=MASK_LAYOUTS[layout])

    def fn(state, mask):
        return f(state[0][None], state[1][None], t[:1], mask[None])[0]

    assert_equivariant(fn, key, (x[0], eta[0]), group=None, mask=m[0], invariant=True)


def test_depends_on_rotation_and_noise(key):
    """f_theta is not rotation-invariant (the Haar R0 provides equivariance) and uses eta."""
    f = small_gamma()
    x, eta, t, m = inputs(2)

    def fn(x, mask):
        return f(x[None], eta[:1], t[:1], mask[None])[0]

    with pytest.raises(AssertionError, match="not invariant"):
        assert_equivariant(fn, key, x[0], group="O3", mask=m[0], invariant=True, permutations=False)
    assert float(jnp.max(jnp.abs(f(x, eta, t, m) - f(x, 2.0 * eta, t, m)))) > 1e-3


def test_shape_translation_and_padding():
    f = small_gamma()
    x, eta, t, m = inputs(3, mask=MASK_LAYOUTS["interleaved"])
    a = f(x, eta, t, m)
    assert a.shape == (2, 3, 3)
    shift = jnp.asarray([1.0, -2.0, 4.0]) * m[..., None]
    np.testing.assert_allclose(f(x + shift, eta, t, m), a, rtol=1e-4, atol=1e-4)
    rng = np.random.default_rng(4)
    pad = (m == 0)[..., None]
    x2 = jnp.where(pad, jnp.asarray(rng.normal(size=x.shape) * 10, jnp.float32), x)
    eta2 = jnp.where(pad, jnp.asarray(rng.normal(size=eta.shape) * 10, jnp.float32), eta)
    np.testing.assert_allclose(f(x2, eta2, t, m), a, atol=1e-6)


@pytest.mark.parametrize("layout", ["trailing", "interleaved"])
def test_padding_gives_the_unpadded_result(layout):
    f = small_gamma()
    x, eta, t, m = inputs(9, mask=MASK_LAYOUTS[layout])
    real = np.flatnonzero(np.asarray(MASK_LAYOUTS[layout]))
    compact = f(x[:, real], eta[:, real], t, jnp.ones((2, len(real))))
    np.testing.assert_allclose(f(x, eta, t, m), compact, rtol=1e-4, atol=1e-5)


def test_gamma_without_blocks_matches_algorithm_4(x64):
    """depth 0: A = GELU(mean_i([x, eta, Psi] W_G) W_1) W_2, row-major 3 x 3, float64 numpy."""
    from scipy.special import erf

    model = GammaNet(**{**SMALL, "depth": 0}, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    randomise(model, jax.random.key(3))
    x, eta, t, m = (np.asarray(a, np.float64) for a in inputs(10, mask=MASK_LAYOUTS["interleaved"]))
    got = np.asarray(model(*(jnp.asarray(a) for a in (x, eta, t, m))))
    lin = lambda layer, a: a @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])  # noqa: E731
    emb = model.distance_embedding
    xc = (x - (x * m[..., None]).sum(1, keepdims=True) / m.sum(1)[:, None, None]) * m[..., None]
    mu, sd = np.asarray(emb.means[...]), np.abs(np.asarray(emb.stds[...])) + 0.01
    d = np.linalg.norm(xc[:, :, None] - xc[:, None], axis=-1)[..., None]
    psi = np.exp(-0.5 * ((d - mu) / sd) ** 2) / (np.sqrt(2 * np.pi) * sd)
    psi = (psi * m[:, None, :, None]).sum(2) / m.sum(1)[:, None, None]
    tokens = np.concatenate([xc, eta, lin(emb.linear, psi)], -1)
    z = lin(model.backbone.input, tokens)
    pooled = (z * m[..., None]).sum(1) / m.sum(1)[:, None]
    u = lin(model.decoder1, pooled)
    want = lin(model.decoder2, 0.5 * u * (1 + erf(u / np.sqrt(2)))).reshape(-1, 3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_state_input_and_time_dependence():
    f = small_gamma()
    x, eta, t, m = inputs(5)
    h = jnp.ones(x.shape[:-1] + (4,))
    np.testing.assert_array_equal(f((x, h), eta, t, m), f(x, eta, t, m))
    assert float(jnp.max(jnp.abs(f(x, eta, t, m) - f(x, eta, t + 0.5, m)))) > 1e-4


def test_gradients_through_qr_are_finite():
    model = small_gamma(compiled=False)
    x, eta, t, m = inputs(6, mask=MASK_LAYOUTS["trailing"])
    x = x.at[:, 1].set(x[:, 0])  # coincident real atoms
    graphdef, params = nnx.split(model)
    target = jnp.eye(3)

    def loss(params, x):
        r = qr_to_orthogonal(nnx.merge(graphdef, params)(x, eta, t, m))
        return jnp.sum((r - target) ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert max(float(jnp.max(jnp.abs(g))) for g in leaves) > 0.0


def test_shared_distance_embedding_counted_once():
    dit = DiT(6, hidden=16, depth=1, heads=2, node_embed=10, num_gaussians=5, rngs=nnx.Rngs(0))
    emb = dit.distance_embedding
    shared = GammaNet(**{**SMALL, "dist_embed": 6}, distance_embedding=emb, rngs=nnx.Rngs(1))
    own = GammaNet(**SMALL, rngs=nnx.Rngs(1))
    assert shared.distance_embedding is emb
    assert count_params(own) == count_params(shared)

    class Pair(nnx.Module):
        def __init__(self):
            self.eps = dit
            self.gamma = shared

    emb_size = count_params(emb)
    assert count_params(Pair()) == count_params(dit) + count_params(shared) - emb_size
    with pytest.raises(ValueError, match="eta must have shape"):
        x, eta, t, m = inputs(7)
        own(x, eta[..., :2], t, m)


def test_default_size_and_official_breakdown():
    """f_theta at QM9 size: 2,197,257 without Psi (the paper's 2.2M), 2,234,625 with its own."""
    g = nnx.eval_shape(lambda: GammaNet(rngs=nnx.Rngs(0)))
    assert count_params(g) == 2_234_625
    assert count_params(g) - count_params(g.distance_embedding) == 2_197_257


def test_full_gamma_is_equivariant_in_distribution(key):
    """R(g . x) ~ g R(x) for R = R0 qr(f(R0^T x, eta)), untrained f (false-alarm rate 1e-3).

    The same test on R = qr(f(x, eta)) (no Haar R0) must fail: f alone is not equivariant.
    """
    f = small_gamma(seed=3)
    x, _, t, m = inputs(8, n=5, batch=1, mask=[1, 1, 1, 1, 0])
    x, m = x[0], m[0]

    def f_unbatched(x, eta, mask):
        return f(x[None], eta[None], t[:1], mask[None])[0]

    gamma = recursive_gamma(f_unbatched, "O3", noise_dim=3)
    assert_stochastically_equivariant(
        gamma, key, x, group="O3", mask=m, num_samples=200, out_act=act_on_rotation,
        permutations=True, reference="scipy",
    )  # fmt: skip

    def broken(key, x, mask):
        eta = com_free_normal(key, x.shape, mask)
        return qr_to_orthogonal(f_unbatched(x, eta, mask))

    with pytest.raises(AssertionError):
        assert_stochastically_equivariant(
            broken, key, x, group="O3", mask=m, num_samples=200, out_act=act_on_rotation,
            permutations=False, reference="scipy",
        )  # fmt: skip
