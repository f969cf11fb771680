"""The learned trunk `f_theta` of SymDiff's rotation kernel gamma, in Flax NNX.

SymDiff (paper 002, Appendix B.2, Algorithm 4):

    Psi = GaussianDistanceEmbedding(x)                         [N, n_emb]
    z   = [x, eta, Psi] W_G                                    [N, m_size]
    z   = DiTWithoutFinalLayer(t, z)                           [N, m_size]
    z   = (1/N) sum_{i real} z_i                               [m_size]   (S_N-invariant)
    A   = GELU(z W_1 + b_1) W_2 + b_2, reshaped to 3 x 3

`GammaNet` returns the raw matrix `A [B, 3, 3]`; the caller maps it to O(3) with
`symdiff_jax.groups.qr_to_orthogonal` and composes it with a Haar `R0`
(`symdiff_jax.symmetrise.recursive_gamma`): `R = R0 . qr(f(R0^T x, eta))`.

`A` is exactly invariant under joint permutations of the real atoms of `x` and
`eta`, and does not depend on padded atoms. It is not rotation-invariant (it must
not be: the Haar `R0` makes gamma equivariant in distribution).

QM9 sizes (reference implementation): `m_size = 128`, 8 blocks, 4 heads, SwiGLU
ratio 4, decoder 128 -> 64 -> 9, `m_noise = 3`; the distance embedding has the
same sizes as the eps-network's (K = 184, n_emb = 200) and is shared with it there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.groups import remove_com
from symdiff_jax.models.dit import DiTBackbone
from symdiff_jax.models.embeddings import GaussianDistanceEmbedding
from symdiff_jax.models.layers import time_vector, xavier_linear
from symdiff_jax.symmetrise.actions import get_positions
from symdiff_jax.validation import check_points, default_mask


class GammaNet(nnx.Module):
    """`f_theta(x, eta, t) -> A [B, 3, 3]`, S_N-invariant (paper 002, Algorithm 4).

    Args:
      hidden: `m_size`, the DiT width (128).
      depth: `m_layers` (8).
      heads: `m_heads` (4).
      mlp_ratio: packed SwiGLU width over `hidden` (4).
      decoder_hidden: `m'_size`, the hidden width of the decoder MLP (64).
      noise_dims: `m_noise`, the width of `eta` (3).
      dist_embed: `n_emb`, the width of the distance features (200).
      num_gaussians: `K` (184).
      distance_embedding: an existing `GaussianDistanceEmbedding` to share (the
        reference implementation shares the eps-network's: pass
        `dit.distance_embedding`); if None, the net owns one of size
        (`num_gaussians`, `dist_embed`).
      n_dims: spatial dimension (3); the output is `[B, n_dims, n_dims]`.
      mlp: "swiglu" or "gelu" (DiT blocks).
      time_scale: factor on `t` before the sinusoidal embedding.
      rngs: `nnx.Rngs` for the parameters.
      param_dtype: parameter dtype.
      dtype: compute dtype of the trunk's matmuls (see `DiT`); None: full precision.
    """

    def __init__(
        self,
        hidden: int = 128,
        depth: int = 8,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        decoder_hidden: int = 64,
        noise_dims: int = 3,
        dist_embed: int = 200,
        num_gaussians: int = 184,
        *,
        distance_embedding: GaussianDistanceEmbedding | None = None,
        n_dims: int = 3,
        mlp: str = "swiglu",
        time_scale: float = 1.0,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=None,
    ):
        if noise_dims < 0:
            raise ValueError(f"noise_dims must be >= 0; got {noise_dims}.")
        if distance_embedding is None:
            distance_embedding = GaussianDistanceEmbedding(
                num_gaussians, dist_embed, rngs=rngs, param_dtype=param_dtype
            )
        self.distance_embedding = distance_embedding
        self.noise_dims = noise_dims
        self.n_dims = n_dims
        self.backbone = DiTBackbone(
            hidden,
            depth,
            heads,
            mlp_ratio,
            in_features=n_dims + noise_dims + distance_embedding.features,
            out_features=None,
            mlp=mlp,
            time_scale=time_scale,
            rngs=rngs,
            param_dtype=param_dtype,
            dtype=dtype,
        )
        self.decoder1 = xavier_linear(hidden, decoder_hidden, rngs, param_dtype)
        self.decoder2 = xavier_linear(decoder_hidden, n_dims * n_dims, rngs, param_dtype)

    def __call__(
        self,
        x,
        eta: jax.Array,
        t: jax.Array,
        mask: jax.Array | None = None,
        *,
        distance_features: jax.Array | None = None,
    ) -> jax.Array:
        """The raw matrix `A` of each system.

        Args:
          x: `[B, N, 3]` positions, or a state `(x, h, ...)` / `{"x": x, ...}` whose
            positions are used (`h` is not an input of `f_theta`). The CoM of the real
            atoms is removed first.
          eta: `[B, N, noise_dims]` noise (SymDiff: `N_U(0, I)`); padded rows ignored.
          t: `[B]` (or scalar, or `[B, 1]`) diffusion times.
          mask: `[B, N]` real-atom mask (default: all real).
          distance_features: `self.distance_embedding(x, mask)` if already computed
            (it is invariant, so it may come from any rotation of `x`); None computes it.

        Returns:
          `[B, n_dims, n_dims]` unconstrained matrices, row-major reshape of the
          decoder output (apply `qr_to_orthogonal` to get a rotation).
        """
        x = get_positions(x)
        check_points(x, dims=(self.n_dims,), min_ndim=3)
        mask = default_mask(x, mask)
        if eta.shape != x.shape[:-1] + (self.noise_dims,):
            raise ValueError(
                f"eta must have shape [B, N, noise_dims] = {x.shape[:-1] + (self.noise_dims,)}; "
                f"got {eta.shape}."
            )
        m = (mask > 0)[..., None]
        x = remove_com(jnp.where(m, x, 0.0), mask)
        eta = eta.astype(x.dtype)
        if distance_features is None:
            distance_features = self.distance_embedding(x, mask)
        tokens = jnp.concatenate([x, eta, distance_features], axis=-1)
        tokens = jnp.where(m, tokens, 0.0)
        t = time_vector(t, x.shape[0], x.dtype)
        z = self.backbone(tokens, t, mask)
        z = jnp.where(m, z, 0.0)
        count = jnp.maximum(jnp.sum(mask.astype(z.dtype), axis=-1, keepdims=True), 1.0)
        pooled = jnp.sum(z, axis=-2) / count
        out = self.decoder2(jax.nn.gelu(self.decoder1(pooled), approximate=False))
        return out.reshape(out.shape[:-1] + (self.n_dims, self.n_dims))
