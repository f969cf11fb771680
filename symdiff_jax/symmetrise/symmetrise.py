"""Stochastic symmetrisation of Markov kernels (SymDiff, paper 002, Theorem 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from symdiff_jax.symmetrise.actions import get_positions, rotation_action, transpose_rotation
from symdiff_jax.validation import (
    check_orthogonal,
    orthogonality_error,
    orthogonality_tolerance,
    poison,
)

Kernel = Callable[..., Any]
"""A Markov kernel as a sampler: `kernel(key, x, *args, **kwargs) -> y`."""

Gamma = Callable[..., Any]
"""A kernel to the group: `gamma(key, x, *args, **kwargs) -> g` (e.g. a rotation `[3, 3]`)."""

Action = Callable[[Any, Any], Any]
"""A group action `act(g, x) -> g . x`."""


def symmetrise(
    kernel: Kernel,
    gamma: Gamma,
    *,
    act: Action | None = None,
    invert: Callable[[Any], Any] | None = None,
    out_act: Action | None = None,
    return_group: bool = False,
) -> Kernel:
    """The symmetrised kernel `sym_gamma(k)` of SymDiff (paper 002), Theorem 1.

    Sampling from `sym_gamma(k)(dy | x)` is

        g ~ gamma(dg | x),    y ~ k(dy | g^-1 . x),    return g . y.

    If `gamma` is an *equivariant base case* (H-invariant and G-equivariant,
    with G acting on itself by left multiplication, e.g. `haar_gamma()` or
    `recursive_gamma(f)`) and `kernel` is H-equivariant, the result is
    (H x G)-equivariant as a Markov kernel: `y(g . x)` and `g . y(x)` have the
    same law. With `gamma = haar_gamma()` and H = S_N this turns an S_N-equivariant
    network into an S_N x O(3)-equivariant one (SymDiff section 3.3, eq. 14:
    `R . eps_theta(R^T . z_t)`).

    Args:
      kernel: `kernel(key, x, *args, **kwargs) -> y`. A deterministic function can
        be wrapped with `as_kernel`.
      gamma: `gamma(key, x, *args, **kwargs) -> g`.
      act: the action `act(g, x) -> g . x` on the input. Default: `rotation_action`,
        i.e. `g` is a rotation `[..., d, d]` acting on the positions of `x`
        (an array `[..., N, d]`, `(x, h, ...)` or `{"x": x, ...}`).
      invert: `invert(g) -> g^-1`. Default: the transpose (orthogonal matrices).
      out_act: the action on the output `y`. Default: the same as `act`.
      return_group: if True the new kernel returns `(g . y, g)`.

    Returns:
      `kernel'(key, x, *args, **kwargs) -> g . y` (or `(g . y, g)`). Extra
      positional and keyword arguments (time `t`, `mask`, ...) go unchanged to
      both `gamma` and `kernel`. Pure, and jit/vmap/grad compatible whenever
      `kernel` and `gamma` are.

    Raises (from the returned kernel): with the default action, ValueError when the
    kernel's output positions do not have the dimension of the group element
    (`[..., N, d]` for `g [..., d, d]`); with the default inverse (the transpose), when a
    concrete `g` is not orthogonal. Under jit a non-orthogonal `g` gives NaN outputs (and a NaN returned `g`).
    """
    rotations_out = out_act is None and act is None
    orthogonal = invert is None
    act = rotation_action if act is None else act
    invert = transpose_rotation if invert is None else invert
    out_act = act if out_act is None else out_act

    def symmetrised_kernel(key: jax.Array, x: Any, *args: Any, **kwargs: Any):
        key_group, key_kernel = jax.random.split(key)
        g = gamma(key_group, x, *args, **kwargs)
        if orthogonal:
            check_orthogonal(g, "the group element g returned by gamma")
            g = poison_non_orthogonal(g)
        y = kernel(key_kernel, act(invert(g), x), *args, **kwargs)
        if rotations_out:
            check_kernel_output(y, g)
        y = out_act(g, y)
        return (y, g) if return_group else y

    return symmetrised_kernel


def check_kernel_output(y: Any, g: jax.Array) -> None:
    """Raises when the kernel's output positions `[..., N, d]` do not fit `g [..., d, d]`."""
    positions = get_positions(y)
    shape, g_shape = jnp.shape(positions), jnp.shape(g)
    if len(shape) < 2 or shape[-1] != g_shape[-1]:
        raise ValueError(
            f"the kernel returned positions of shape {tuple(shape)}; the group element has "
            f"shape {tuple(g_shape)}, so the kernel must return [..., N, {g_shape[-1]}] "
            "(check the kernel's output, not the rotation)."
        )


def poison_non_orthogonal(g: jax.Array) -> jax.Array:
    """`g` set to NaN unless every matrix of `g [..., d, d]` is orthogonal to sqrt(eps).

    Under jit a non-orthogonal group element then makes the whole symmetrised output
    NaN (the check of concrete values is `check_orthogonal`). The input side is
    poisoned, not the output, so a valid `g` leaves the compiled computation unchanged.
    """
    g_arr = jnp.asarray(g)
    ok = orthogonality_error(g_arr) <= orthogonality_tolerance(g_arr.dtype)
    return poison_floating(g_arr, ok)


def poison_floating(leaf: Any, ok: jax.Array) -> Any:
    """A floating array `leaf` set to NaN where `ok` is False; other leaves unchanged."""
    arr = jnp.asarray(leaf)
    return poison(arr, ok) if jnp.issubdtype(arr.dtype, jnp.inexact) else leaf


def as_kernel(fn: Callable[..., Any]) -> Kernel:
    """Wraps a deterministic `fn(x, *args, **kwargs)` as a kernel `(key, x, ...) -> fn(x, ...)`.

    For example `symmetrise(as_kernel(eps_theta), haar_gamma())` computes
    `R . eps_theta(R^T . z_t, t)` with `R ~ Haar` (SymDiff eq. 14 with SymDiff-H).
    """

    def kernel(key: jax.Array, x: Any, *args: Any, **kwargs: Any):
        del key
        return fn(x, *args, **kwargs)

    return kernel
