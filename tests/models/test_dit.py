"""DiT eps-network: S_N equivariance, padding, CoM, components against numpy, sizes.

Small networks (width 16, 2 blocks) with randomised parameters (the adaLN-Zero
initialisation makes a fresh DiT output exactly zero). Permutations come from the
library's test sampler and from numpy; components are checked against float64 numpy
re-implementations of the formulas.
"""

import math
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.models.dit import (
    Attention,
    DiT,
    DiTBlock,
    SwiGLU,
    layer_norm,
    materialise_gradient,
)
from symdiff_jax.models.embeddings import (
    GaussianDistanceEmbedding,
    TimestepEmbedding,
    pairwise_distances,
    timestep_embedding,
)
from symdiff_jax.models.mlp import dense_tokens
from symdiff_jax.models.parameters import count_params, param_breakdown
from symdiff_jax.testing import assert_equivariant, randomise_parameters
from symdiff_jax.testing.equivariance import act_on_atom_features
from symdiff_jax.testing.modules import MASK_LAYOUTS, compiled_call

F = 4
SMALL = dict(hidden=16, depth=2, heads=2, mlp_ratio=4.0, node_embed=10, num_gaussians=5)
OFFICIAL_TOTAL = 31_195_834  # SymDiff QM9, reference implementation


def randomise(module, key, scale=0.4):
    return randomise_parameters(module, key, scale)


def small_dit(seed=0, compiled=True, **kw):
    model = DiT(F, **{**SMALL, **kw}, rngs=nnx.Rngs(seed))
    model = randomise(model, jax.random.key(seed + 100))
    return compiled_call(model) if compiled else model


def inputs(seed, n=6, batch=2, mask=None, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n, 3)) * 1.5
    h = rng.normal(size=(batch, n, F))
    m = np.ones((batch, n)) if mask is None else np.broadcast_to(np.asarray(mask), (batch, n))
    t = rng.uniform(size=(batch,))
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return cast(x), cast(h), cast(t), cast(m)


def unbatched(model, t):
    def fn(state, mask):
        x, h = state
        ex, eh = model(x[None], h[None], t[None], mask[None])
        return ex[0], eh[0]

    return fn


# ----------------------------------------------------------------------------- symmetry


def test_fresh_dit_outputs_zero():
    """adaLN-Zero: the final layer and all modulations start at zero, as in DiT."""
    model = compiled_call(DiT(F, **SMALL, rngs=nnx.Rngs(0)))
    x, h, t, m = inputs(0)
    ex, eh = model(x, h, t, m)
    assert float(jnp.max(jnp.abs(ex))) == 0.0 and float(jnp.max(jnp.abs(eh))) == 0.0


@pytest.mark.parametrize("layout", sorted(MASK_LAYOUTS))
def test_permutation_equivariant(key, layout):
    model = small_dit()
    x, h, t, m = inputs(1, mask=MASK_LAYOUTS[layout])
    fn = unbatched(model, t[0])
    assert_equivariant(fn, key, (x[0], h[0]), group=None, mask=m[0], num_trials=3)


def test_permutation_equivariant_numpy_float64(x64):
    """Each system of a batch gets its own numpy permutation of its real atoms; tight tolerance."""
    model = small_dit(param_dtype=jnp.float64)
    x, h, t, _ = inputs(2, batch=2, dtype=np.float64)
    m = jnp.asarray([MASK_LAYOUTS["interleaved"], MASK_LAYOUTS["trailing"]], jnp.float64)
    rng = np.random.default_rng(3)
    perms = []
    for row in np.asarray(m):
        perm = np.arange(len(row))
        real = np.flatnonzero(row)
        perm[real] = rng.permutation(real)
        perms.append(perm)
    perms = np.stack(perms)
    take = lambda a: jnp.take_along_axis(a, jnp.asarray(perms)[..., None], axis=1)  # noqa: E731
    ex, eh = model(x, h, t, m)
    px, ph = model(take(x), take(h), t, m)
    assert ex.dtype == jnp.float64
    np.testing.assert_allclose(px, take(ex), atol=1e-12)
    np.testing.assert_allclose(ph, take(eh), atol=1e-12)
    assert float(jnp.max(jnp.abs(ex))) > 1e-3  # the outputs are not trivially zero


def test_not_rotation_equivariant(key):
    """The bare DiT is only S_N-equivariant: the O(3) check must fail (symmetrisation fixes it)."""
    model = small_dit()
    x, h, t, m = inputs(4)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(
            unbatched(model, t[0]), key, (x[0], h[0]), group="O3", mask=m[0], reference="scipy"
        )


def test_translation_invariant():
    model = small_dit()
    x, h, t, m = inputs(5, mask=MASK_LAYOUTS["trailing"])
    shift = jnp.asarray([[3.0, -2.0, 0.5]]) * m[..., None]
    ex, eh = model(x, h, t, m)
    sx, sh = model(x + shift, h, t, m)
    np.testing.assert_allclose(sx, ex, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sh, eh, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["trailing", "interleaved"])
def test_outputs_com_free_and_padding_zero(layout):
    model = small_dit()
    x, h, t, m = inputs(6, mask=MASK_LAYOUTS[layout])
    ex, eh = model(x, h, t, m)
    com = jnp.sum(ex * m[..., None], axis=1)
    np.testing.assert_allclose(com, 0.0, atol=1e-5)
    pad = m == 0
    assert float(jnp.max(jnp.abs(ex[pad]))) == 0.0
    assert float(jnp.max(jnp.abs(eh[pad]))) == 0.0
    assert float(jnp.max(jnp.abs(ex))) > 1e-3


@pytest.mark.parametrize("layout", ["trailing", "interleaved"])
def test_padded_atoms_do_not_influence_real_ones(layout):
    model = small_dit()
    x, h, t, m = inputs(7, mask=MASK_LAYOUTS[layout])
    rng = np.random.default_rng(8)
    pad = (m == 0)[..., None]
    x2 = jnp.where(pad, jnp.asarray(rng.normal(size=x.shape) * 10, x.dtype), x)
    h2 = jnp.where(pad, jnp.asarray(rng.normal(size=h.shape) * 10, h.dtype), h)
    ex, eh = model(x, h, t, m)
    ex2, eh2 = model(x2, h2, t, m)
    np.testing.assert_allclose(ex2, ex, atol=1e-6)
    np.testing.assert_allclose(eh2, eh, atol=1e-6)


@pytest.mark.parametrize("layout", ["trailing", "interleaved"])
def test_padding_gives_the_unpadded_result(layout):
    """The real rows of a padded system equal the outputs of the system without padding."""
    model = small_dit()
    x, h, t, m = inputs(16, mask=MASK_LAYOUTS[layout])
    real = np.flatnonzero(np.asarray(MASK_LAYOUTS[layout]))
    ex, eh = model(x, h, t, m)
    cx, ch = model(x[:, real], h[:, real], t, jnp.ones((2, len(real))))
    np.testing.assert_allclose(ex[:, real], cx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(eh[:, real], ch, rtol=1e-4, atol=1e-5)


def test_jit_matches_eager_and_gradients_finite():
    """Coincident atoms (a duplicated real atom, padded atoms at 0) must not give NaN gradients."""
    model = small_dit(compiled=False)
    x, h, t, m = inputs(9, mask=MASK_LAYOUTS["trailing"])
    x = x.at[:, 1].set(x[:, 0]).at[:, 4:].set(0.0)
    graphdef, params = nnx.split(model)

    def loss(params, x):
        ex, eh = nnx.merge(graphdef, params)(x, h, t, m)
        return jnp.sum(ex**2) + jnp.sum(eh**2)

    value, (g_params, g_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
    ex, eh = model(x, h, t, m)
    np.testing.assert_allclose(value, jnp.sum(ex**2) + jnp.sum(eh**2), rtol=1e-5)
    leaves = jax.tree_util.tree_leaves(g_params) + [g_x]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.max(jnp.abs(g_x))) > 0.0


def test_float64():
    with jax.enable_x64(True):
        model = small_dit(param_dtype=jnp.float64)
        x, h, t, m = inputs(10, dtype=np.float64)
        ex, eh = model(x, h, t, m)
        assert ex.dtype == eh.dtype == jnp.float64


# ----------------------------------------------------------------------------- numpy references


def arr(v):
    return np.asarray(v[...], np.float64)


def np_silu(a):
    return a / (1.0 + np.exp(-a))


def np_layer_norm(z, eps=1e-6):
    return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + eps)


def np_linear(lin, a):
    return a @ arr(lin.kernel) + arr(lin.bias)


def np_psi_mean(x, m, means, stds):
    """(1/N) sum_{j real} psi(|x_i - x_j|): [B, N, K], by explicit loops."""
    sd = np.abs(stds) + 0.01
    out = np.zeros(x.shape[:2] + (len(means),))
    for b in range(x.shape[0]):
        real = np.flatnonzero(m[b])
        for i in range(x.shape[1]):
            for j in real:
                d = np.linalg.norm(x[b, i] - x[b, j])
                out[b, i] += np.exp(-0.5 * ((d - means) / sd) ** 2) / (np.sqrt(2 * np.pi) * sd)
            out[b, i] /= len(real)
    return out


def np_attention(attn, z, mask):
    """Masked multi-head softmax attention with the packed [3, heads, head_dim] qkv layout."""
    b_, n, d = z.shape
    heads = attn.num_heads
    hd = d // heads
    qkv = np_linear(attn.qkv, z).reshape(b_, n, 3, heads, hd)
    out = np.zeros((b_, n, heads, hd))
    for b in range(b_):
        for k in range(heads):
            q, key, v = qkv[b, :, 0, k], qkv[b, :, 1, k], qkv[b, :, 2, k]
            logits = q @ key.T / np.sqrt(hd) + np.where(mask[b] > 0, 0.0, -np.inf)[None]
            p = np.exp(logits - logits.max(-1, keepdims=True))
            out[b, :, k] = (p / p.sum(-1, keepdims=True)) @ v
    return np_linear(attn.proj, out.reshape(b_, n, d))


def np_swiglu(mlp, z):
    u = np_linear(mlp.fc1, z)
    a, b = np.split(u, 2, axis=-1)
    return np_linear(mlp.fc2, np_silu(a) * b)


def np_time(temb, t):
    half = temb.frequency_dim // 2
    freqs = np.exp(-np.log(temb.max_period) * np.arange(half) / half)
    args = temb.time_scale * t[:, None] * freqs
    emb = np.concatenate([np.cos(args), np.sin(args)], -1)
    return np_linear(temb.linear2, np_silu(np_linear(temb.linear1, emb)))


def np_masked_com_free(v, m):
    mean = (v * m[..., None]).sum(1, keepdims=True) / m.sum(1)[:, None, None]
    return (v - mean) * m[..., None]


# ----------------------------------------------------------------------------- components


def test_distance_embedding_matches_numpy_loop(x64):
    """Psi_i = (1/N) sum_{j real} psi(|x_i - x_j|) W_D + b, psi with |s| + 0.01 (reference)."""
    emb = GaussianDistanceEmbedding(4, 3, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    randomise(emb, jax.random.key(1), scale=1.0)
    x, _, _, m = inputs(11, dtype=np.float64, mask=MASK_LAYOUTS["interleaved"])
    got = np.asarray(emb(x, m))
    xs, ms = np.asarray(x), np.asarray(m)
    want = np_linear(emb.linear, np_psi_mean(xs, ms, arr(emb.means), arr(emb.stds)))
    np.testing.assert_allclose(got, want * ms[..., None], rtol=1e-10, atol=1e-14)
    assert float(np.max(np.abs(got[ms == 0]))) == 0.0


def test_pairwise_distances_gradient_at_zero():
    x = jnp.zeros((3, 3)).at[1].set(jnp.asarray([1.0, 2.0, 2.0]))
    d = pairwise_distances(x)
    np.testing.assert_allclose(d[0, 1], 3.0)
    g = jax.grad(lambda x: jnp.sum(pairwise_distances(x)))(x)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_timestep_embedding_matches_numpy():
    t = np.array([0.0, 0.3, 1.0])
    got = np.asarray(timestep_embedding(jnp.asarray(t, jnp.float32), 7, max_period=100.0))
    freqs = 100.0 ** (-np.arange(3) / 3)
    want = np.concatenate(
        [np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs), 0 * t[:, None]], 1
    )
    np.testing.assert_allclose(got, want, atol=1e-6)
    out = TimestepEmbedding(8, rngs=nnx.Rngs(0))(jnp.asarray(t))
    assert out.shape == (3, 8)


def test_attention_matches_numpy_masked_softmax(x64):
    attn = Attention(8, 2, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    randomise(attn, jax.random.key(2))
    z = np.random.default_rng(12).normal(size=(2, 5, 8))
    mask = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], float)
    got = np.asarray(attn(jnp.asarray(z), jnp.asarray(mask)))
    np.testing.assert_allclose(got, np_attention(attn, z, mask), rtol=1e-9, atol=1e-12)


def test_swiglu_packed_semantics(x64):
    """timm SwiGLUPacked: fc1 D -> r D split as (a, b), out = (silu(a) * b) W_2, W_2: r D / 2 -> D."""
    mlp = SwiGLU(6, 24, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    w1 = np.asarray(mlp.fc1.kernel[...])
    b1 = np.asarray(mlp.fc1.bias[...])
    assert w1.shape == (6, 24) and mlp.fc2.kernel[...].shape == (12, 6)
    # timm init_weights: gate half has bias 1 and weights ~1e-6; value half Glorot, bias 0.
    np.testing.assert_array_equal(b1[12:], 1.0)
    np.testing.assert_array_equal(b1[:12], 0.0)
    assert np.max(np.abs(w1[:, 12:])) < 1e-5 < np.max(np.abs(w1[:, :12]))
    randomise(mlp, jax.random.key(3))
    x = np.random.default_rng(13).normal(size=(3, 6))
    w1, b1 = np.asarray(mlp.fc1.kernel[...]), np.asarray(mlp.fc1.bias[...])
    w2, b2 = np.asarray(mlp.fc2.kernel[...]), np.asarray(mlp.fc2.bias[...])
    u = x @ w1 + b1
    a, b = u[:, :12], u[:, 12:]
    want = (a / (1 + np.exp(-a)) * b) @ w2 + b2
    np.testing.assert_allclose(np.asarray(mlp(jnp.asarray(x))), want, rtol=1e-10)


def test_block_matches_numpy_adaln_zero(x64):
    """z += g1 Attn(LN(z)(1 + c1) + s1); z += g2 MLP(LN(z)(1 + c2) + s2), (s1, c1, g1, s2, c2, g2)."""
    block = DiTBlock(8, 2, 4.0, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    randomise(block, jax.random.key(4))
    rng = np.random.default_rng(17)
    z, c = rng.normal(size=(2, 5, 8)), rng.normal(size=(2, 8))
    mask = np.array([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1]], float)
    got = np.asarray(block(jnp.asarray(z), jnp.asarray(c), jnp.asarray(mask)))
    s1, c1, g1, s2, c2, g2 = np.split(np_linear(block.adaln, np_silu(c))[:, None], 6, axis=-1)
    z = z + g1 * np_attention(block.attn, np_layer_norm(z) * (1 + c1) + s1, mask)
    z = z + g2 * np_swiglu(block.mlp, np_layer_norm(z) * (1 + c2) + s2)
    np.testing.assert_allclose(got, z, rtol=1e-9, atol=1e-12)


def test_dit_without_blocks_matches_algorithm_3(x64):
    """depth 0: eps = proj_U FinalLayer([[x, h] W_I, Psi], c(t)), checked in float64 numpy."""
    model = DiT(F, hidden=16, depth=0, heads=2, node_embed=10, num_gaussians=5,
                rngs=nnx.Rngs(0), param_dtype=jnp.float64)  # fmt: skip
    randomise(model, jax.random.key(5))
    x, h, t, m = (
        np.asarray(a) for a in inputs(18, mask=MASK_LAYOUTS["interleaved"], dtype=np.float64)
    )
    ex, eh = model(*(jnp.asarray(a) for a in (x, h, t, m)))
    emb = model.distance_embedding
    xc = np_masked_com_free(x, m)
    psi = np_linear(emb.linear, np_psi_mean(xc, m, arr(emb.means), arr(emb.stds)))
    tokens = np.concatenate(
        [np_linear(model.input_embedding, np.concatenate([xc, h], -1)), psi], -1
    )
    tokens = tokens * m[..., None]
    final = model.backbone.final
    c = np_time(model.backbone.time_embedding, t)
    shift, scale = np.split(np_linear(final.adaln, np_silu(c))[:, None], 2, axis=-1)
    out = np_linear(final.linear, np_layer_norm(tokens) * (1 + scale) + shift) * m[..., None]
    np.testing.assert_allclose(ex, np_masked_com_free(out[..., :3], m), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(eh, out[..., 3:], rtol=1e-9, atol=1e-12)


def test_trunk_is_the_input_of_the_final_layer(key, x64):
    model = small_dit(compiled=False, param_dtype=jnp.float64)
    x, h, t, m = inputs(19, mask=MASK_LAYOUTS["interleaved"], dtype=np.float64)
    z = model.trunk(x, h, t, m)
    assert z.shape == (2, 6, SMALL["hidden"])
    assert float(jnp.max(jnp.abs(z[m == 0]))) == 0.0
    out = model.backbone.final(z, model.backbone.time_embedding(t))
    ex, eh = model(x, h, t, m)
    np.testing.assert_allclose(eh, out[..., 3:] * m[..., None], rtol=1e-10, atol=1e-12)

    def fn(state, mask):
        return model.trunk(state[0][None], state[1][None], t[:1], mask[None])[0]

    assert_equivariant(fn, key, (x[0], h[0]), group=None, mask=m[0], num_trials=2,
                       out_act=act_on_atom_features)  # fmt: skip


def test_layer_norm_matches_numpy():
    x = np.random.default_rng(14).normal(size=(4, 7))
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(layer_norm(jnp.asarray(x, jnp.float32)), want, atol=1e-5)


def test_distance_embedding_gradients_match_finite_differences(x64):
    """d Psi / d(means, stds, x) against central differences of the numpy loop (float64).

    One Gaussian is made 40 wide, so the padded partners (set beyond every Gaussian's
    reach instead of masked) must still contribute exactly nothing.
    """
    emb = GaussianDistanceEmbedding(4, 3, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    randomise(emb, jax.random.key(6), scale=1.0)
    emb.stds[...] = emb.stds[...].at[2].set(40.0)
    x, _, _, m = (
        np.asarray(a) for a in inputs(20, dtype=np.float64, mask=MASK_LAYOUTS["trailing"])
    )
    w = np.random.default_rng(21).normal(size=(2, 6, 4))
    means, stds = arr(emb.means), arr(emb.stds)

    def np_loss(x, means, stds):
        return float(np.sum(np_psi_mean(x * m[..., None], m, means, stds) * w * m[..., None]))

    def loss(x, means, stds):
        params = types.SimpleNamespace(means=means, stds=stds)  # basis reads only these
        return jnp.sum(GaussianDistanceEmbedding.basis(params, x * m[..., None], m) * w)

    got = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(x), jnp.asarray(means), jnp.asarray(stds))
    np.testing.assert_allclose(loss(x, means, stds), np_loss(x, means, stds), rtol=1e-12)
    eps = 1e-6
    for arg, g in zip(range(3), got, strict=True):
        args = [x, means, stds]
        want = np.zeros_like(args[arg])
        for idx in np.ndindex(args[arg].shape):
            hi, lo = [a.copy() for a in args], [a.copy() for a in args]
            hi[arg][idx] += eps
            lo[arg][idx] -= eps
            want[idx] = (np_loss(*hi) - np_loss(*lo)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6, atol=1e-8)
    assert float(np.max(np.abs(np.asarray(got[0])[m == 0]))) == 0.0


def test_dense_tokens_is_the_linear_layer():
    lin = nnx.Linear(5, 3, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(22).normal(size=(2, 4, 6, 5)), jnp.float32)
    for a in (x[0, 0, 0], x[0, 0], x[0], x):
        got = dense_tokens(lin, a)
        assert got.shape == a.shape[:-1] + (3,)
        np.testing.assert_allclose(got, lin(a), rtol=1e-6, atol=1e-6)


def test_materialise_gradient_changes_no_value_or_derivative():
    def f(x):
        return jnp.sum(jnp.sin(x) * x**2)

    def g(x):
        return jnp.sum(jnp.sin(materialise_gradient(x)) * materialise_gradient(x) ** 2)

    x = jnp.asarray(np.random.default_rng(23).normal(size=(3, 4)), jnp.float32)
    v = jnp.ones_like(x)
    assert g(x) == f(x)
    close = dict(rtol=1e-6, atol=1e-7)  # fusion may reorder float operations
    np.testing.assert_allclose(jax.jit(jax.grad(g))(x), jax.jit(jax.grad(f))(x), **close)
    np.testing.assert_allclose(jax.jvp(g, (x,), (v,))[1], jax.jvp(f, (x,), (v,))[1], **close)
    np.testing.assert_allclose(jax.hessian(g)(x), jax.hessian(f)(x), **close)
    np.testing.assert_allclose(jax.vmap(jax.grad(g))(x), jax.vmap(jax.grad(f))(x), **close)
    assert materialise_gradient(jnp.zeros((0, 3))).shape == (0, 3)


# ----------------------------------------------------------------------------- compiled structure


def _compiled_dit_gradient(depth, batch=3, n=5):
    """HLO text (entry computation and all) of the compiled gradient of a small DiT."""
    model = DiT(F, hidden=16, depth=depth, heads=2, node_embed=10, num_gaussians=5,
                rngs=nnx.Rngs(0))  # fmt: skip
    graphdef, params = nnx.split(model)
    x, h, t, m = inputs(24, n=n, batch=batch)

    def loss(p):
        ex, eh = nnx.merge(graphdef, p)(x, h, t, m)
        return jnp.sum(ex**2) + jnp.sum(eh**2)

    return jax.jit(jax.grad(loss)).lower(params).compile().as_text()


def _largest_fusion(hlo: str) -> int:
    sizes, current = {}, None
    for line in hlo.splitlines():
        head = re.match(r"^%(\S+) \(", line)
        if head:
            current = head.group(1)
            sizes[current] = 0
        elif current and line.startswith("  %"):
            sizes[current] += 1
        elif line.startswith("}"):
            current = None
    return max(sizes[c] for c in re.findall(r"fusion\(.*?calls=%([^,\s]+)", hlo))


def test_backward_fusions_do_not_grow_with_depth():
    """The residual cotangent is cut at every half block (`materialise_gradient`).

    Without the cut, XLA:CPU fuses the cotangent's whole chain of adds into each of its
    consumers: the largest fusion grows linearly with depth (~200 ops at depth 2, ~630
    at depth 8) and the step's cost quadratically. With it, the size stays put.
    """
    shallow = _largest_fusion(_compiled_dit_gradient(2))
    deep = _largest_fusion(_compiled_dit_gradient(8))
    assert deep <= 1.25 * shallow, (shallow, deep)


def test_weight_gradients_read_the_cotangent_in_place():
    """No `[features, tokens]` transposed copy in the backward (`dense_tokens`).

    A Linear applied to `[B, N, in]` has a weight gradient contracting two axes, which
    XLA:CPU lowers with a transposed copy of the output cotangent (an array of shape
    `[out, B N]` that also absorbs and recomputes the cotangent's producers).
    """
    batch, n = 3, 5
    hlo = _compiled_dit_gradient(2, batch, n).split("ENTRY")[1]
    transposed = re.findall(rf"^  %(\S+) = f32\[\d+,{batch * n}\]", hlo, re.M)
    assert not transposed, transposed


# ----------------------------------------------------------------------------- sizes


def dit_count_by_hand(f, d, depth, ratio, n_z, k, n=3, freq=256):
    """Parameters of the reference DiTGaussian_dynamics, layer by layer."""
    io, n_emb, p = n + f, d - n_z, int(d * ratio)
    block = (d * 3 * d + 3 * d) + (d * d + d) + (d * p + p) + (p // 2 * d + d) + (d * 6 * d + 6 * d)
    time = (freq * d + d) + (d * d + d)
    final = (d * 2 * d + 2 * d) + (d * io + io)
    gauss = 2 * k + (k * n_emb + n_emb)
    return gauss + (io * n_z + n_z) + time + depth * block + final


def test_small_param_count_matches_hand_formula():
    model = DiT(F, **SMALL, rngs=nnx.Rngs(0))
    assert count_params(model) == dit_count_by_hand(F, 16, 2, 4.0, 10, 5)
    assert sum(param_breakdown(model).values()) == count_params(model)


def test_default_param_counts():
    """QM9 sizes: eps_theta 28,965,553; with GammaNet sharing Psi, 31,162,810 = official - 33,024.

    The official f_theta also instantiates a final-layer adaLN it never applies
    (128 * 256 + 256 = 33,024 parameters); ours has no unused layer.
    """
    from symdiff_jax.models.gamma_net import GammaNet

    dit = nnx.eval_shape(lambda: DiT(6, rngs=nnx.Rngs(0)))
    assert count_params(dit) == dit_count_by_hand(6, 384, 12, 4.0, 184, 184) == 28_965_553

    class Pair(nnx.Module):
        def __init__(self, rngs):
            self.eps = DiT(6, rngs=rngs)
            self.gamma = GammaNet(distance_embedding=self.eps.distance_embedding, rngs=rngs)

    pair = nnx.eval_shape(lambda: Pair(nnx.Rngs(0)))
    total = count_params(pair)
    assert total == 31_162_810 == OFFICIAL_TOTAL - 33_024
    assert abs(total - OFFICIAL_TOTAL) / OFFICIAL_TOTAL < 0.01
    assert math.isclose(total / 1e6, 31.2, abs_tol=0.05)


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="node_embed \\+ dist_embed must equal"):
        DiT(F, hidden=16, node_embed=10, dist_embed=7, depth=1, heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible"):
        DiT(F, hidden=16, node_embed=10, depth=1, heads=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="even"):
        DiT(F, hidden=16, node_embed=10, depth=1, heads=2, mlp_ratio=1.0625, rngs=nnx.Rngs(0))
    model = DiT(F, hidden=16, node_embed=10, depth=1, heads=2, rngs=nnx.Rngs(0))
    x, h, t, m = inputs(15)
    with pytest.raises(ValueError, match="h must have shape"):
        model(x, h[..., :2], t, m)
    with pytest.raises(ValueError, match="mask must have shape"):
        model(x, h, t, m[:, :3])
    with pytest.raises(ValueError, match="t must be"):
        model(x, h, jnp.zeros(5), m)


# ----------------------------------------------------------------------------- mixed precision


def test_bfloat16_matmuls_keep_float32_weights_and_track_the_float32_output():
    """Mixed precision: bf16 matmul operands, float32 weights, accumulation and output."""
    full = randomise(DiT(F, **SMALL, rngs=nnx.Rngs(0)), jax.random.key(100))
    mixed = DiT(F, **SMALL, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    nnx.update(mixed, nnx.state(full))
    x, h, t, m = inputs(0, mask=MASK_LAYOUTS["trailing"])
    graphdef, params = nnx.split(mixed)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}

    def loss(p, x):
        eps_x, eps_h = nnx.merge(graphdef, p)(x, h, t, m)
        return jnp.sum(eps_x**2) + jnp.sum(eps_h**2), (eps_x, eps_h)

    lowered = jax.jit(jax.grad(loss, has_aux=True)).lower(params, x)
    assert re.search(r"dot_general.*bf16", lowered.as_text()), "no bf16 matmul"
    grads, (eps_x, eps_h) = lowered.compile()(params, x)
    ref_x, ref_h = compiled_call(full)(x, h, t, m)
    assert eps_x.dtype == eps_h.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(ref_h)))
    err = max(float(jnp.max(jnp.abs(eps_x - ref_x))), float(jnp.max(jnp.abs(eps_h - ref_h))))
    # bf16 keeps 8 significant bits (relative rounding 2^-9 = 2e-3 per operand).
    assert 1e-5 * scale < err < 3e-2 * scale, (err, scale)
    assert all(
        g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)
    )
