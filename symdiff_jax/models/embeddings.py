"""Input embeddings of the SymDiff networks: Gaussian distance features and time.

- `GaussianDistanceEmbedding`: the O(3)-invariant positional features of SymDiff
  (paper 002, Appendix B.1, after Luo et al., 2022),
  `Psi_i = (1/N) sum_j psi(|x_i - x_j|) W_D`, with `K` learnable Gaussians `psi`.
- `TimestepEmbedding`: the sinusoidal time features of DiT (Peebles and Xie, 2023)
  followed by a two-layer SiLU MLP; SymDiff feeds it the continuous time `t` in [0, 1].

Both are S_N-equivariant per atom and blind to padding (`mask`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.models.mlp import dense_tokens
from symdiff_jax.validation import check_points, default_mask

Array = jax.Array

# The floor added to |sigma_k| so that no Gaussian collapses to a spike.
GAUSSIAN_MIN_STD = 1e-2

# A padded partner atom is placed this many widths beyond every Gaussian centre:
# exp(-FAR_STDS**2 / 2) = exp(-2048) is exactly 0 in float32 and float64.
FAR_STDS = 64.0


def pairwise_distances(x: Array) -> Array:
    """Euclidean distances `|x_i - x_j|` of all pairs, with a finite gradient at 0.

    The diagonal (and any pair of coincident points, e.g. padded atoms at the origin)
    has distance 0; its gradient is set to 0 instead of the NaN of `sqrt` at 0, so
    that the distance features can be differentiated with respect to `x` (SymDiff's
    loss differentiates through `R^T z_t` and hence through `x`).

    Args:
      x: `[..., N, d]` points.

    Returns:
      `[..., N, N]` distances.
    """
    diff = x[..., :, None, :] - x[..., None, :, :]
    sq = jnp.sum(diff * diff, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def gaussian_basis(distance: Array, means: Array, stds: Array) -> Array:
    """The Gaussian basis functions `psi^k(d)` of SymDiff (paper 002, Appendix B.1).

        psi^k(d) = exp(-(d - mu_k)^2 / (2 s_k^2)) / (sqrt(2 pi) s_k),
        s_k = |sigma_k| + 0.01.

    The paper prints a leading minus sign; the reference implementation (and
    Transformer-M, which it follows) uses the positive density and the floor 0.01
    on the width. We follow the implementation; the sign is absorbed by `W_D`.

    Args:
      distance: `[...]` distances.
      means: `[K]` centres `mu_k`.
      stds: `[K]` raw widths `sigma_k` (any sign).

    Returns:
      `[..., K]` basis values.
    """
    s = jnp.abs(stds) + GAUSSIAN_MIN_STD
    z = (distance[..., None] - means) / s
    return jnp.exp(-0.5 * z * z) / (math.sqrt(2.0 * math.pi) * s)


def _uniform(low: float, high: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


class GaussianDistanceEmbedding(nnx.Module):
    """`Psi_i = (1/N) sum_{j real} psi(|x_i - x_j|) W_D + b_D` (paper 002, Appendix B.1).

    The mean runs over the `N` real atoms `j` of the system, the pair `j = i`
    (distance 0) included, as in the reference implementation. The features are
    invariant under rotations, reflections and translations of `x`, S_N-equivariant,
    and zero on padded rows.

    Initialisation as the reference: centres and widths uniform on [0, 3], `W_D`
    Glorot-uniform, `b_D = 0`.

    Args:
      num_gaussians: `K`, the number of learnable Gaussians (184 for QM9).
      features: `n_emb`, the width of `Psi` (200 for QM9).
      rngs: `nnx.Rngs` for the parameters.
      param_dtype: parameter dtype.
      padded_pair_bias: the reference implementation's form `(1/N) sum_{j < N_max}
        (psi_ij W_D + b_D)`, the sum over every one of the `N_max` padded slots, so the
        bias enters as `(N_max / N) b_D` and the features depend on the padded width.
        Needed to reproduce its checkpoints; False (default) adds `b_D` once.
    """

    def __init__(
        self,
        num_gaussians: int,
        features: int,
        *,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        padded_pair_bias: bool = False,
    ):
        if num_gaussians < 1 or features < 1:
            raise ValueError(
                "num_gaussians and features must be positive integers; got "
                f"num_gaussians={num_gaussians}, features={features}."
            )
        self.num_gaussians = num_gaussians
        self.features = features
        self.padded_pair_bias = padded_pair_bias
        self.means = nnx.Param(_uniform(0.0, 3.0)(rngs.params(), (num_gaussians,), param_dtype))
        self.stds = nnx.Param(_uniform(0.0, 3.0)(rngs.params(), (num_gaussians,), param_dtype))
        self.linear = nnx.Linear(
            num_gaussians,
            features,
            kernel_init=nnx.initializers.xavier_uniform(),
            bias_init=nnx.initializers.zeros_init(),
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def basis(self, x: Array, mask: Array) -> Array:
        """`(1/N) sum_{j real} psi(|x_i - x_j|)`: `[B, N, 3], [B, N] -> [B, N, K]` (before `W_D`).

        Padded partners `j` are not multiplied by a `[B, N, N, K]` pair mask: their
        distance is set beyond the reach of every Gaussian (`FAR_STDS` widths past the
        farthest centre), where `psi` underflows to exactly 0 in float32 and float64, and
        so are its derivatives. The sum is the same, without a `[B, N, N, K]` mask that
        XLA:CPU would broadcast and write out (twice per call with its gradient).
        """
        m = mask.astype(x.dtype)
        means, stds = self.means[...], self.stds[...]
        width = jnp.abs(stds) + GAUSSIAN_MIN_STD
        far = jax.lax.stop_gradient(jnp.max(means + FAR_STDS * width))
        d = jnp.where(m[..., None, :] > 0, pairwise_distances(x), far)
        total = jnp.sum(gaussian_basis(d, means, stds), axis=-2)
        count = jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1.0)
        return total * (m / count)[..., None]

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        """Distance features of every atom.

        Args:
          x: `[..., N, d]` positions.
          mask: `[..., N]` real-atom mask (default: all real).

        Returns:
          `[..., N, features]`, zero on padded rows.
        """
        check_points(x)
        mask = default_mask(x, mask)
        m = mask.astype(x.dtype)
        x = jnp.where(m[..., None] > 0, x, 0.0)
        # The mean over j commutes with W_D: embed the K averaged basis values once.
        out = dense_tokens(self.linear, self.basis(x, m))
        if self.padded_pair_bias:
            count = jnp.sum(m, axis=-1, keepdims=True)
            extra = jnp.where(count > 0, x.shape[-2] / jnp.maximum(count, 1.0) - 1.0, 0.0)
            out = out + extra[..., None] * self.linear.bias[...]
        return out * m[..., None]


def timestep_embedding(t: Array, dim: int, max_period: float = 10000.0) -> Array:
    """Sinusoidal features of a (continuous) time, as in DiT / GLIDE.

        freq_k = max_period^(-k / (dim/2)),  k = 0 .. dim/2 - 1,
        emb(t) = [cos(t freq), sin(t freq)]  (zero-padded to `dim` when odd).

    Args:
      t: `[B]` times (any real values; SymDiff passes t in [0, 1]).
      dim: number of features.
      max_period: sets the lowest frequency.

    Returns:
      `[B, dim]` features in the dtype of `t` (float32 for integer `t`).
    """
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.float32)
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=t.dtype) / half)
    args = t[..., None] * freqs
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[..., :1])], axis=-1)
    return emb


class TimestepEmbedding(nnx.Module):
    """Time conditioning vector `c(t) = W_2 SiLU(W_1 emb(t_scale * t))`.

    DiT's `TimestepEmbedder`: sinusoidal features (`timestep_embedding`) followed by
    Linear(frequency_dim, hidden), SiLU, Linear(hidden, hidden); weights N(0, 0.02^2),
    biases 0. The SymDiff reference feeds the continuous `t` in [0, 1] unscaled
    (`time_scale=1`); `time_scale=1000` reproduces DiT's integer-step convention.

    Args:
      hidden: output width.
      rngs: `nnx.Rngs` for the parameters.
      frequency_dim: number of sinusoidal features (256).
      max_period: lowest frequency of the sinusoids (10000).
      time_scale: factor applied to `t` before the sinusoids.
      param_dtype: parameter dtype.
    """

    def __init__(
        self,
        hidden: int,
        *,
        rngs: nnx.Rngs,
        frequency_dim: int = 256,
        max_period: float = 10000.0,
        time_scale: float = 1.0,
        param_dtype=jnp.float32,
    ):
        self.frequency_dim = frequency_dim
        self.max_period = max_period
        self.time_scale = time_scale
        kw = dict(
            kernel_init=nnx.initializers.normal(0.02),
            bias_init=nnx.initializers.zeros_init(),
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.linear1 = nnx.Linear(frequency_dim, hidden, **kw)
        self.linear2 = nnx.Linear(hidden, hidden, **kw)

    def __call__(self, t: Array) -> Array:
        """`[B] -> [B, hidden]`."""
        emb = timestep_embedding(
            self.time_scale * jnp.asarray(t), self.frequency_dim, self.max_period
        )
        return self.linear2(jax.nn.silu(self.linear1(emb)))
