"""The Diffusion Transformer (DiT) eps-network of SymDiff, in Flax NNX.

SymDiff (paper 002, section 4 and Appendix B.1, Algorithm 3) takes as `eps_theta`
a DiT (Peebles and Xie, 2023) over the atoms of a molecule:

    Psi   = GaussianDistanceEmbedding(x)              [N, n_emb]
    z     = [[x, h] W_I, Psi]                          [N, n_z + n_emb = hidden]
    z     = DiT blocks (adaLN-Zero, masked multi-head attention, SwiGLU MLP), c = c(t)
    eps   = FinalLayer(z, c)                           [N, 3 + F]
    eps_x = proj_U(eps[:, :3]),  eps_h = eps[:, 3:]

There is no positional encoding of the atom index, so the network is exactly
S_N-equivariant; attention only looks at real atoms (`mask`), so padded atoms do
not influence real ones, and padded output rows are zero. It is not O(3)-equivariant:
SymDiff makes it so by stochastic symmetrisation (`symdiff_jax.symmetrise`).

Sizes for QM9 (reference implementation): hidden 384, depth 12, 6 heads, SwiGLU with
`mlp_ratio` 4 in timm's packed convention (fc1: hidden -> 4 hidden, split in two
halves, silu(a) * b, fc2: 2 hidden -> hidden), `n_z = 184`, `n_emb = 200`, `K = 184`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.groups import remove_com
from symdiff_jax.models.embeddings import GaussianDistanceEmbedding, TimestepEmbedding
from symdiff_jax.models.layers import mixed_precision, time_vector, xavier_linear
from symdiff_jax.models.mlp import dense_tokens
from symdiff_jax.validation import check_points, default_mask

Array = jax.Array

LAYER_NORM_EPS = 1e-6


# ----------------------------------------------------------------------------- helpers


def layer_norm(x: Array, eps: float = LAYER_NORM_EPS) -> Array:
    """LayerNorm over the last axis without scale or bias (adaLN supplies them)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def modulate(x: Array, shift: Array, scale: Array) -> Array:
    """adaLN modulation `x (1 + scale) + shift`, one `shift, scale [B, D]` per system."""
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


@jax.custom_jvp
def materialise_gradient(x: Array) -> Array:
    """Identity whose tangent (and so its reverse-mode cotangent) is computed in full here.

    The residual stream of a deep network accumulates its cotangent over all later
    blocks: `dz_k = dz_{k+1} + (branch terms of block k)`. XLA:CPU fuses this chain of
    elementwise adds into every consumer of every `dz_k` and recomputes it there, which
    costs time quadratic in the depth (and tens of seconds of compilation). Passing the
    tangent through a `lax.cond` whose predicate XLA cannot fold (both branches are the
    identity) makes it a buffer that later fusions read instead of recompute. The value,
    its derivatives and their values are unchanged; under `vmap` the cond becomes a
    select and the cut may be lost (only speed depends on it).

    Args:
      x: any array.

    Returns:
      `x`.
    """
    return x


@materialise_gradient.defjvp
def _materialise_gradient_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    if x.size == 0:
        return x, t
    keep = jnp.isfinite(x.reshape(-1)[0])
    # The second branch is not a plain forward, or JAX would prune the cond.
    return x, jax.lax.cond(keep, lambda u: u, lambda u: u * 1, t)


# ----------------------------------------------------------------------------- layers


class Attention(nnx.Module):
    """Multi-head self-attention over the atoms of each system, keys masked.

    `softmax(q k^T / sqrt(d_head) + log mask_j) v`: every atom (real or padded)
    attends to the real atoms only, so padded atoms never influence real ones.
    The packed `qkv` projection has the output layout `[3, heads, head_dim]`.
    """

    def __init__(
        self, dim: int, num_heads: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=None
    ):
        if dim % num_heads:
            raise ValueError(
                f"hidden size {dim} must be divisible by the number of heads {num_heads}."
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dtype = dtype
        self.qkv = xavier_linear(dim, 3 * dim, rngs, param_dtype, dtype=dtype)
        self.proj = xavier_linear(dim, dim, rngs, param_dtype, dtype=dtype)

    def __call__(self, x: Array, mask: Array) -> Array:
        """`x [B, N, D]`, `mask [B, N]` -> `[B, N, D]`."""
        b, n, d = x.shape
        qkv = dense_tokens(self.qkv, x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        key_mask = (mask > 0)[:, None, None, :]
        if self.dtype is not None:
            # Mixed precision: JAX's attention op (bf16 products, float32 softmax; the
            # form cuDNN's fused kernels take on GPUs). It always takes the softmax in
            # float32, so full precision (float64 included) keeps the explicit form below.
            q, k, v = (a.astype(self.dtype) for a in (q, k, v))
            out = jax.nn.dot_product_attention(q, k, v, mask=key_mask).astype(x.dtype)
        else:
            # Heads-major `[B, H, N, d]` operands and a barrier that keeps XLA:CPU from
            # fusing the softmax into the weights-values product: at QM9 sizes both
            # products then run as plain batched matmuls (1.4-1.5x faster, forward and backward).
            q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
            logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(self.head_dim)
            # A large finite negative (not -inf) keeps a system without real atoms finite.
            logits = jnp.where(key_mask, logits, jnp.finfo(logits.dtype).min)
            weights = jax.lax.optimization_barrier(jax.nn.softmax(logits, axis=-1))
            out = jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", weights, v), 1, 2)
        return dense_tokens(self.proj, out.reshape(b, n, d))


def _swiglu_fc1_init(base):
    """Glorot-uniform for fc1, then timm's gate init: second half ~ N(0, 1e-12)."""

    def init(key, shape, dtype=jnp.float32):
        k1, k2 = jax.random.split(key)
        w = base(k1, shape, dtype)
        half = shape[-1] // 2
        return w.at[..., half:].set(1e-6 * jax.random.normal(k2, shape[:-1] + (half,), dtype))

    return init


def _swiglu_fc1_bias(key, shape, dtype=jnp.float32):
    half = shape[-1] // 2
    return jnp.concatenate([jnp.zeros((shape[-1] - half,), dtype), jnp.ones((half,), dtype)])


class SwiGLU(nnx.Module):
    """SwiGLU MLP in timm's packed convention (`SwiGLUPacked`, i.e. `GluMlp`, gate first).

        [a, b] = x W_1 + b_1     (W_1: dim -> hidden_features, split in halves)
        out    = (silu(a) * b) W_2 + b_2     (W_2: hidden_features / 2 -> dim)

    With `hidden_features = mlp_ratio * dim` the gated width is `mlp_ratio / 2 * dim`
    (2 dim for ratio 4, the "SwiGLU ratio 2" of SymDiff Appendix B.1). Initialisation
    as timm's `init_weights`: the second half of fc1 has weights N(0, 1e-6^2) and bias
    1, so `b ~ 1` and the layer starts as `silu(a) W_2`.
    """

    def __init__(
        self,
        dim: int,
        hidden_features: int,
        *,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=None,
    ):
        if hidden_features % 2:
            raise ValueError(
                f"SwiGLU needs an even packed width (it is split in two halves); got "
                f"hidden_features={hidden_features}. Choose mlp_ratio so that "
                "int(hidden * mlp_ratio) is even."
            )
        self.fc1 = nnx.Linear(
            dim,
            hidden_features,
            kernel_init=_swiglu_fc1_init(nnx.initializers.xavier_uniform()),
            bias_init=_swiglu_fc1_bias,
            param_dtype=param_dtype,
            rngs=rngs,
            **mixed_precision(dtype, param_dtype),
        )
        self.fc2 = xavier_linear(hidden_features // 2, dim, rngs, param_dtype, dtype=dtype)

    def __call__(self, x: Array) -> Array:
        a, b = jnp.split(dense_tokens(self.fc1, x), 2, axis=-1)
        return dense_tokens(self.fc2, jax.nn.silu(a) * b)


class GeluMLP(nnx.Module):
    """Plain MLP `gelu_tanh(x W_1 + b_1) W_2 + b_2` (DiT's default, `mlp="gelu"`)."""

    def __init__(
        self,
        dim: int,
        hidden_features: int,
        *,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=None,
    ):
        self.fc1 = xavier_linear(dim, hidden_features, rngs, param_dtype, dtype=dtype)
        self.fc2 = xavier_linear(hidden_features, dim, rngs, param_dtype, dtype=dtype)

    def __call__(self, x: Array) -> Array:
        return dense_tokens(self.fc2, jax.nn.gelu(dense_tokens(self.fc1, x), approximate=True))


_MLPS = {"swiglu": SwiGLU, "gelu": GeluMLP}


class DiTBlock(nnx.Module):
    """A DiT block with adaLN-Zero conditioning (Peebles and Xie, 2023, section 3.2).

        (s1, c1, g1, s2, c2, g2) = Linear(SiLU(c))        (zero-initialised)
        z <- z + g1 * Attn(modulate(LN(z), s1, c1), mask)
        z <- z + g2 * MLP(modulate(LN(z), s2, c2))

    Args:
      hidden: width D.
      num_heads: attention heads (D must be divisible by it).
      mlp_ratio: packed MLP width over D (`int(D * mlp_ratio)` units in fc1).
      mlp: "swiglu" (SymDiff) or "gelu" (DiT's default).
      rngs: `nnx.Rngs`.
      param_dtype: parameter dtype.
      dtype: compute dtype of the matmuls (e.g. bfloat16: inputs and weights cast,
        products accumulated in `param_dtype`); None keeps `param_dtype`. Norms,
        softmax, activations and the residual stream stay in `param_dtype`.
    """

    def __init__(
        self,
        hidden: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        mlp: str = "swiglu",
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=None,
    ):
        if mlp not in _MLPS:
            raise ValueError(f"Unknown mlp {mlp!r}; expected one of {sorted(_MLPS)}.")
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        self.attn = Attention(hidden, num_heads, **kw)
        self.mlp = _MLPS[mlp](hidden, int(hidden * mlp_ratio), **kw)
        self.adaln = xavier_linear(hidden, 6 * hidden, rngs, param_dtype, zero=True, dtype=dtype)

    def __call__(self, z: Array, c: Array, mask: Array) -> Array:
        """`z [B, N, D]`, `c [B, D]`, `mask [B, N]` -> `[B, N, D]`."""
        s1, c1, g1, s2, c2, g2 = jnp.split(self.adaln(jax.nn.silu(c)), 6, axis=-1)
        z = z + g1[:, None, :] * self.attn(modulate(layer_norm(z), s1, c1), mask)
        z = materialise_gradient(z)
        return z + g2[:, None, :] * self.mlp(modulate(layer_norm(z), s2, c2))


class FinalLayer(nnx.Module):
    """DiT's output layer: `Linear(modulate(LN(z), shift, scale))`, all zero-initialised."""

    def __init__(
        self,
        hidden: int,
        out_features: int,
        *,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=None,
    ):
        kw = dict(zero=True, dtype=dtype)
        self.adaln = xavier_linear(hidden, 2 * hidden, rngs, param_dtype, **kw)
        self.linear = xavier_linear(hidden, out_features, rngs, param_dtype, **kw)

    def __call__(self, z: Array, c: Array) -> Array:
        shift, scale = jnp.split(self.adaln(jax.nn.silu(c)), 2, axis=-1)
        return dense_tokens(self.linear, modulate(layer_norm(z), shift, scale))


class DiTBackbone(nnx.Module):
    """The generic DiT over a set: optional input Linear, time embedding, blocks, final layer.

    With `out_features=None` there is no final layer: this is SymDiff's
    `DiTWithoutFinalLayer` (Appendix B.2, Algorithm 4), used by the gamma trunk.

    Args:
      hidden: width D.
      depth: number of `DiTBlock`s.
      num_heads: attention heads.
      mlp_ratio: packed MLP width over D.
      in_features: if given, a Glorot-initialised Linear(in_features, D) embeds the
        input tokens (`W_G` of the gamma trunk); otherwise tokens must already be D wide.
      out_features: width of the final layer, or None for no final layer.
      mlp: "swiglu" or "gelu".
      time_scale: factor on `t` before the sinusoidal embedding.
      rngs: `nnx.Rngs`.
      param_dtype: parameter dtype.
      dtype: compute dtype of the block matmuls (see `DiTBlock`); None: `param_dtype`.
    """

    def __init__(
        self,
        hidden: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        in_features: int | None = None,
        out_features: int | None = None,
        mlp: str = "swiglu",
        time_scale: float = 1.0,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=None,
    ):
        if depth < 0:
            raise ValueError(f"depth must be >= 0; got {depth}.")
        self.hidden = hidden
        self.input = (
            None if in_features is None else xavier_linear(in_features, hidden, rngs, param_dtype)
        )
        self.time_embedding = TimestepEmbedding(
            hidden, time_scale=time_scale, rngs=rngs, param_dtype=param_dtype
        )
        self.blocks = nnx.List(
            [
                DiTBlock(
                    hidden,
                    num_heads,
                    mlp_ratio,
                    mlp=mlp,
                    rngs=rngs,
                    param_dtype=param_dtype,
                    dtype=dtype,
                )
                for _ in range(depth)
            ]
        )
        self.final = (
            None
            if out_features is None
            else FinalLayer(hidden, out_features, rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        )

    def __call__(self, z: Array, t: Array, mask: Array, *, use_final_layer: bool = True) -> Array:
        """`z [B, N, in]`, `t [B]`, `mask [B, N]` -> `[B, N, out]` (not masked).

        With `use_final_layer=False` (or no final layer), returns the `[B, N, D]`
        features after the last block.
        """
        if self.input is not None:
            z = dense_tokens(self.input, z)
        if z.shape[-1] != self.hidden:
            raise ValueError(
                f"DiT tokens must have width hidden={self.hidden}; got shape {z.shape}."
            )
        c = self.time_embedding(t)
        for block in self.blocks:
            z = materialise_gradient(block(z, c, mask))
        if use_final_layer and self.final is not None:
            z = self.final(z, c)
        return z


# ----------------------------------------------------------------------------- DiT


class DiT(nnx.Module):
    """SymDiff's eps-network `eps_theta` (paper 002, Appendix B.1, Algorithm 3).

    Args:
      num_features: F, the width of the atom features `h` (6 for QM9 with charges:
        one-hot H, C, N, O, F and the atomic number).
      hidden: DiT width `n_size` (384).
      depth: number of blocks `n_layers` (12).
      heads: attention heads `n_heads` (6).
      mlp_ratio: packed SwiGLU width over `hidden` (4, timm convention).
      node_embed: `n_z`, the width of `[x, h] W_I` (184).
      dist_embed: `n_emb`, the width of the distance features `Psi`; must equal
        `hidden - node_embed` (default: that value, 200).
      num_gaussians: `K`, the number of Gaussians of `Psi` (184).
      n_dims: spatial dimension (3).
      mlp: "swiglu" (SymDiff) or "gelu".
      time_scale: factor on `t` before the sinusoidal embedding (1: t in [0, 1]).
      rngs: `nnx.Rngs` for the parameters.
      param_dtype: parameter dtype.
      dtype: compute dtype of the transformer's matmuls, e.g. `jnp.bfloat16` for mixed
        precision on GPUs/TPUs (weights stay `param_dtype`, products accumulate in it;
        the embeddings, norms and softmax stay in `param_dtype`); None: full precision.
    """

    def __init__(
        self,
        num_features: int,
        hidden: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        node_embed: int = 184,
        dist_embed: int | None = None,
        num_gaussians: int = 184,
        *,
        n_dims: int = 3,
        mlp: str = "swiglu",
        time_scale: float = 1.0,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=None,
    ):
        if dist_embed is None:
            dist_embed = hidden - node_embed
        if node_embed < 1 or dist_embed < 1 or node_embed + dist_embed != hidden:
            raise ValueError(
                "The DiT input is [[x, h] W_I, Psi], so node_embed + dist_embed must equal "
                f"hidden with both positive; got node_embed={node_embed}, "
                f"dist_embed={dist_embed}, hidden={hidden}."
            )
        if num_features < 0:
            raise ValueError(f"num_features must be >= 0; got {num_features}.")
        self.num_features = num_features
        self.n_dims = n_dims
        self.distance_embedding = GaussianDistanceEmbedding(
            num_gaussians, dist_embed, rngs=rngs, param_dtype=param_dtype
        )
        self.input_embedding = xavier_linear(n_dims + num_features, node_embed, rngs, param_dtype)
        self.backbone = DiTBackbone(
            hidden,
            depth,
            heads,
            mlp_ratio,
            out_features=n_dims + num_features,
            mlp=mlp,
            time_scale=time_scale,
            rngs=rngs,
            param_dtype=param_dtype,
            dtype=dtype,
        )

    def _check(self, x, h, mask):
        check_points(x, dims=(self.n_dims,), min_ndim=3)
        if h.shape[:-1] != x.shape[:-1] or h.shape[-1] != self.num_features:
            raise ValueError(
                f"h must have shape [B, N, F] = {(*x.shape[:-1], self.num_features)} to match "
                f"x {x.shape} and num_features={self.num_features}; got {h.shape}."
            )
        return default_mask(x, mask)

    def _tokens(self, x: Array, h: Array, mask: Array, distance_features: Array | None) -> Array:
        m = (mask > 0)[..., None]
        x = remove_com(jnp.where(m, x, 0.0), mask)
        if distance_features is None:
            distance_features = self.distance_embedding(x, mask)
        elif distance_features.shape != x.shape[:-1] + (self.distance_embedding.features,):
            raise ValueError(
                f"distance_features must have shape [B, N, n_emb] = "
                f"{x.shape[:-1] + (self.distance_embedding.features,)}; got "
                f"{distance_features.shape}."
            )
        tokens = jnp.concatenate(
            [
                dense_tokens(self.input_embedding, jnp.concatenate([x, h], axis=-1)),
                distance_features,
            ],
            axis=-1,
        )
        return jnp.where(m, tokens, 0.0)

    def trunk(
        self,
        x: Array,
        h: Array,
        t: Array,
        mask: Array | None = None,
        *,
        distance_features: Array | None = None,
    ) -> Array:
        """Per-atom features before the final layer: `[B, N, hidden]`, zero on padded rows.

        Args: as `__call__`.
        """
        mask = self._check(x, h, mask)
        t = time_vector(t, x.shape[0], x.dtype)
        tokens = self._tokens(x, h, mask, distance_features)
        z = self.backbone(tokens, t, mask, use_final_layer=False)
        return jnp.where((mask > 0)[..., None], z, 0.0)

    def __call__(
        self,
        x: Array,
        h: Array,
        t: Array,
        mask: Array | None = None,
        *,
        distance_features: Array | None = None,
    ) -> tuple[Array, Array]:
        """Predicts the noise `eps = (eps_x, eps_h)` of a noisy molecule.

        Args:
          x: `[B, N, 3]` positions (its CoM is removed first, so the output does not
            depend on a translation of the real atoms).
          h: `[B, N, F]` features.
          t: `[B]` (or scalar, or `[B, 1]`) diffusion times, in [0, 1] for SymDiff.
          mask: `[B, N]` real-atom mask (default: all real).
          distance_features: `Psi = self.distance_embedding(x, mask)` if already
            computed (it is O(3)-invariant, so a symmetrised call computes it once for
            all its rotations of `x`); None computes it here.

        Returns:
          `(eps_x [B, N, 3], eps_h [B, N, F])`: `eps_x` has zero CoM over the real
          atoms; both are zero on padded rows.
        """
        mask = self._check(x, h, mask)
        t = time_vector(t, x.shape[0], x.dtype)
        out = self.backbone(self._tokens(x, h, mask, distance_features), t, mask)
        out = jnp.where((mask > 0)[..., None], out, 0.0)
        eps_x = remove_com(out[..., : self.n_dims], mask)
        return eps_x, out[..., self.n_dims :]
