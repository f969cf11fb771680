"""The SymDiff denoiser against its definition, `R . eps_theta(R^T . z_t, t)` (paper 002,
eq. 14), evaluated piece by piece."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import configs
from symdiff_jax.models.factory import build_denoiser
from symdiff_jax.testing import randomise_parameters


def _inputs(batch=3, n=7, features=6, seed=0):
    rng = np.random.default_rng(seed)
    sizes = np.array([n, n - 2, 3])[:batch]
    mask = (np.arange(n)[None] < sizes[:, None]).astype(np.float32)
    x = rng.normal(size=(batch, n, 3)).astype(np.float32) * mask[..., None]
    h = rng.normal(size=(batch, n, features)).astype(np.float32) * mask[..., None]
    t = rng.uniform(size=(batch,)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(h), jnp.asarray(t), jnp.asarray(mask)


@pytest.mark.parametrize("kind", ["symdiff", "symdiff_h"])
def test_symdiff_denoiser_is_the_sandwich_with_one_shared_distance_embedding(kind):
    """The distance features computed once (they are invariant) give the sandwich of
    separately evaluated `gamma` and `eps_theta`, up to float32 rounding."""
    m = configs.get_config("qm9_symdiff", "smoke").model
    m.kind = kind
    denoiser = build_denoiser(m, 6, jax.random.key(0))
    x, h, t, mask = _inputs()
    key = jax.random.key(3)
    # Away from the zero-initialised output layers, so that the outputs are not all 0.
    graphdef, params = nnx.split(randomise_parameters(denoiser, jax.random.key(1), 0.2))

    @jax.jit
    def both(params):
        model = nnx.merge(graphdef, params)
        eps_x, eps_h = model(key, x, h, t, mask)
        r = model.rotation(key, x, h, t, mask)  # gamma alone, its own distance features
        ref_x, ref_h = model.eps_net(x @ r, h, t, mask)  # R^T . z_t, rows as points
        return eps_x, eps_h, ref_x @ jnp.swapaxes(r, -1, -2), ref_h, r

    eps_x, eps_h, ref_x, ref_h, r = both(params)
    np.testing.assert_allclose(
        np.einsum("bij,bkj->bik", r, r), np.broadcast_to(np.eye(3), r.shape), atol=1e-5
    )
    np.testing.assert_allclose(eps_x, ref_x, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(eps_h, ref_h, atol=2e-5, rtol=1e-4)
    # The comparison can fail: another rotation gives another output.
    other_x, _ = jax.jit(lambda p: nnx.merge(graphdef, p).eps_net(x, h, t, mask))(params)
    assert np.max(np.abs(np.asarray(other_x) - np.asarray(eps_x))) > 1e-3


def test_compute_dtype_reaches_every_transformer_matmul():
    """`model.compute_dtype=bfloat16` gives bf16 matmuls in eps_theta and f_theta, float32
    weights and outputs; an unknown dtype is an error naming the choices."""
    m = configs.get_config("qm9_symdiff", "smoke").model
    m.compute_dtype = "bfloat16"
    denoiser = build_denoiser(m, 6, jax.random.key(0))
    blocks = [*denoiser.eps_net.backbone.blocks, *denoiser.gamma_net.backbone.blocks]
    assert all(b.attn.qkv.dtype == jnp.bfloat16 and b.mlp.fc2.dtype == jnp.bfloat16 for b in blocks)
    graphdef, params = nnx.split(randomise_parameters(denoiser, jax.random.key(1), 0.2))
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    x, h, t, mask = _inputs()
    eps_x, eps_h = jax.jit(lambda p: nnx.merge(graphdef, p)(jax.random.key(2), x, h, t, mask))(
        params
    )
    assert eps_x.dtype == eps_h.dtype == jnp.float32
    assert np.all(np.isfinite(eps_x)) and np.all(np.isfinite(eps_h))
    m.compute_dtype = "float16"
    with pytest.raises(ValueError, match="bfloat16"):
        build_denoiser(m, 6, jax.random.key(0))
