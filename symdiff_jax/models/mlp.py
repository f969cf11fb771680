"""Small time-conditioned MLPs, the reflection-equivariant (odd) denoiser of the 1D toy, and
`dense_tokens`, the per-token Linear that the DiT networks use.

Paper 000 (section 4.1) trains the denoiser

    D(x, t) = f(x, t) - f(-x, t),

with `f` a tanh MLP on the concatenation `[x, t]` (1D: 2 -> 10 -> 5 -> 1). `D` is odd in
`x`, hence equivariant to the reflection group G = {+1, -1} acting by `g . x = g x`, for
any parameters. The same construction works in any dimension `d` with G = {I, -I}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


def fan_in_uniform(key: Array, shape: Sequence[int], dtype=jnp.float32) -> Array:
    """Uniform initialiser on [-1/sqrt(fan_in), 1/sqrt(fan_in)], fan_in = shape[0].

    This is the default initialisation of a PyTorch `nn.Linear` (weights and biases), the
    one used by the reference implementation of the toy experiment.

    Args:
      key: PRNG key.
      shape: `(fan_in, fan_out)` for a kernel or `(fan_out,)` for a bias; for a bias the
        fan-in must be bound beforehand (see `_bias_init`).
      dtype: dtype of the result.

    Returns:
      An array of `shape`.
    """
    bound = 1.0 / jnp.sqrt(jnp.asarray(shape[0], dtype))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _bias_init(fan_in: int) -> Callable:
    def init(key, shape, dtype=jnp.float32):
        bound = 1.0 / jnp.sqrt(jnp.asarray(fan_in, dtype))
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TimeMLP(nnx.Module):
    """`f(x, t)`: an MLP on `[x, t]` with a scalar time input and tanh hidden layers.

    Args:
      features: dimension `d` of `x` (and of the output).
      hidden: hidden layer widths, e.g. `(10, 5)` for the paper's 2 -> 10 -> 5 -> 1 at d = 1.
      rngs: `nnx.Rngs` for the parameters.
      activation: elementwise nonlinearity between layers (default tanh).
      init: `"fan_in_uniform"` (PyTorch's nn.Linear default, as in the reference code) or
        `"lecun_normal"` (Flax's default kernel init with zero biases).
      dtype: parameter dtype.
    """

    def __init__(
        self,
        features: int = 1,
        hidden: Sequence[int] = (10, 5),
        *,
        rngs: nnx.Rngs,
        activation: Callable[[Array], Array] = jnp.tanh,
        init: str = "fan_in_uniform",
        dtype=jnp.float32,
    ):
        if init not in ("fan_in_uniform", "lecun_normal"):
            raise ValueError(
                f"Unknown init {init!r}; expected 'fan_in_uniform' (PyTorch default) "
                "or 'lecun_normal' (Flax default)."
            )
        if features < 1:
            raise ValueError(f"features must be a positive integer; got {features}.")
        widths = [features + 1, *hidden, features]
        layers = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            kwargs = {}
            if init == "fan_in_uniform":
                kwargs = dict(kernel_init=fan_in_uniform, bias_init=_bias_init(fan_in))
            layers.append(
                nnx.Linear(fan_in, fan_out, rngs=rngs, param_dtype=dtype, dtype=dtype, **kwargs)
            )
        self.layers = nnx.List(layers)
        self.activation = activation
        self.features = features

    def __call__(self, x: Array, t: Array) -> Array:
        """Evaluates `f(x, t)`.

        Args:
          x: inputs `[..., d]`.
          t: times `[...]` (broadcast against the leading axes of `x`).

        Returns:
          `[..., d]`.
        """
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.features:
            raise ValueError(
                f"x must have shape [..., {self.features}] (last axis = features); "
                f"got shape {x.shape}."
            )
        lead = x.shape[:-1]
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), lead)
        # Feature-major evaluation, h^T <- W^T h^T + b: the same function as h @ W + b, but
        # XLA on CPU runs the long-and-skinny [n, k] @ [k, m] products several times slower
        # than [m, k] @ [k, n] with the long axis last.
        h = jnp.concatenate([x.reshape(-1, self.features).T, t.reshape(1, -1)], axis=0)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer.kernel[...].T @ h + layer.bias[...][:, None]
            if i < last:
                h = self.activation(h)
        return h.T.reshape(*lead, self.features)


def dense_tokens(layer: nnx.Linear, x: Array) -> Array:
    """Applies `layer` to the last axis of `x [..., in]` as one 2-D matmul: `[..., out]`.

    The same function as `layer(x)`, but the leading axes are flattened first. On XLA:CPU
    the weight gradient of `layer(x)` for a 3-D `x [B, N, in]` contracts over two axes,
    which XLA lowers with a transposed copy of the output cotangent; that copy absorbs
    (and recomputes, element by element) the whole chain of elementwise ops producing the
    cotangent, and made a DiT train step ~10x slower than its forward pass. The 2-D form
    `[B N, in] @ [in, out]` has the plain `x^T g` weight gradient and needs no copy.

    Args:
      layer: an `nnx.Linear`.
      x: `[..., in]` inputs (at least 1-D).

    Returns:
      `[..., out]`, equal to `layer(x)`.
    """
    if x.ndim <= 2:
        return layer(x)
    y = layer(x.reshape(-1, x.shape[-1]))
    return y.reshape(*x.shape[:-1], y.shape[-1])


def odd_symmetrise(f: Callable[[Array, Array], Array], x: Array, t: Array) -> Array:
    """`D(x, t) = f(x, t) - f(-x, t)` (paper 000, section 4.1, the 1D toy denoiser).

    For any `f`, `D(-x, t) = -D(x, t)`: `D` is equivariant to G = {I, -I}.

    Args:
      f: callable `(x [..., d], t [...]) -> [..., d]`.
      x: inputs `[..., d]`.
      t: times `[...]`.

    Returns:
      `[..., d]`.
    """
    return f(x, t) - f(-x, t)


class ReflectionDenoiser(nnx.Module):
    """Reflection-equivariant x0-predictor `D(x, t) = f(x, t) - f(-x, t)` with `f = TimeMLP`.

    Args:
      features: dimension `d` of `x`.
      hidden: hidden widths of `f` (paper: `(10, 5)`).
      rngs: `nnx.Rngs` for the parameters.
      init: initialiser of `f`, see `TimeMLP`.
      dtype: parameter dtype.
    """

    def __init__(
        self,
        features: int = 1,
        hidden: Sequence[int] = (10, 5),
        *,
        rngs: nnx.Rngs,
        init: str = "fan_in_uniform",
        dtype=jnp.float32,
    ):
        self.f = TimeMLP(features, hidden, rngs=rngs, init=init, dtype=dtype)

    def __call__(self, x: Array, t: Array) -> Array:
        """Returns `D(x, t)`, shape `[..., d]`, for `x [..., d]` and `t [...]`."""
        return odd_symmetrise(self.f, x, t)
