"""The config-to-module factory: every kind builds, and the compute dtype reaches the matmuls."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.models.denoisers import DiTDenoiser, EGNNDenoiser, SymDiffDenoiser
from symdiff_jax.models.factory import KINDS, build_denoiser
from symdiff_jax.testing import randomise_parameters


def tiny_model_config(kind: str) -> ml_collections.ConfigDict:
    """`config.model` with every field the factory reads, at test sizes."""
    gamma = {
        "hidden": 16, "depth": 1, "heads": 2, "mlp_ratio": 4.0, "decoder_hidden": 8,
        "noise_dims": 3, "share_distance_embedding": True,
    }  # fmt: skip
    egnn = {
        "hidden": 16, "num_layers": 2, "inv_sublayers": 1, "attention": True, "tanh": True,
        "coords_range": 15.0, "norm_constant": 1.0, "aggregation": "sum",
        "normalization_factor": 1.0,
    }  # fmt: skip
    return ml_collections.ConfigDict(
        {
            "kind": kind,
            "group": "O3",
            "hidden": 32,
            "depth": 1,
            "heads": 2,
            "mlp_ratio": 4.0,
            "node_embed": 16,
            "num_gaussians": 8,
            "mlp": "swiglu",
            "compute_dtype": "float32",
            "gamma": gamma,
            "egnn": egnn,
        }  # fmt: skip
    )


def inputs(batch=3, n=7, features=6):
    rng = np.random.default_rng(0)
    mask = (np.arange(n)[None] < np.array([n, n - 2, 3])[:batch, None]).astype(np.float32)
    x = rng.normal(size=(batch, n, 3)).astype(np.float32) * mask[..., None]
    h = rng.normal(size=(batch, n, features)).astype(np.float32) * mask[..., None]
    t = rng.uniform(size=(batch,)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(h), jnp.asarray(t), jnp.asarray(mask)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_and_predicts_masked_noise(kind):
    expected = {"dit": DiTDenoiser, "edm": EGNNDenoiser}.get(kind, SymDiffDenoiser)
    denoiser = build_denoiser(tiny_model_config(kind), 6, jax.random.key(0))
    assert isinstance(denoiser, expected)
    assert (kind == "symdiff") == (getattr(denoiser, "gamma_net", None) is not None)
    x, h, t, mask = inputs()
    eps_x, eps_h = denoiser(jax.random.key(1), x, h, t, mask)
    assert eps_x.shape == x.shape and eps_h.shape == h.shape
    assert np.all(np.asarray(eps_x)[np.asarray(mask) == 0] == 0)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="model.kind"):
        build_denoiser(tiny_model_config("gnn"), 6, jax.random.key(0))


def test_compute_dtype_reaches_every_transformer_matmul():
    """`model.compute_dtype=bfloat16` gives bf16 matmuls in eps_theta and f_theta, float32
    weights and outputs; an unknown dtype is an error naming the choices."""
    m = tiny_model_config("symdiff")
    m.compute_dtype = "bfloat16"
    denoiser = build_denoiser(m, 6, jax.random.key(0))
    blocks = [*denoiser.eps_net.backbone.blocks, *denoiser.gamma_net.backbone.blocks]
    assert all(b.attn.qkv.dtype == jnp.bfloat16 and b.mlp.fc2.dtype == jnp.bfloat16 for b in blocks)
    graphdef, params = nnx.split(randomise_parameters(denoiser, jax.random.key(1), 0.2))
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    x, h, t, mask = inputs()
    eps_x, eps_h = jax.jit(lambda p: nnx.merge(graphdef, p)(jax.random.key(2), x, h, t, mask))(
        params
    )
    assert eps_x.dtype == eps_h.dtype == jnp.float32
    assert np.all(np.isfinite(eps_x)) and np.all(np.isfinite(eps_h))
    m.compute_dtype = "float16"
    with pytest.raises(ValueError, match="bfloat16"):
        build_denoiser(m, 6, jax.random.key(0))
