"""Conversions between the x0-, eps- and v-predictions of a diffusion model.

All follow from `z_t = alpha_t x0 + sigma_t eps` (VDM / SymDiff paper 002, section 2.2)
and, for v, from `alpha_t^2 + sigma_t^2 = 1` with the velocity
`v = alpha_t eps - sigma_t x0` (Salimans & Ho, 2022, "Progressive distillation",
section 4 / appendix D). The inverse relations are

    x0 = alpha_t z_t - sigma_t v,      eps = sigma_t z_t + alpha_t v.

Broadcasting: `alpha` and `sigma` index the leading axes of the data. An array with fewer
axes than `z_t` gets trailing singleton axes appended, so a per-example `alpha [B]` (or a
scalar) scales a batch `z_t [B, N, d]`; an array with as many axes as `z_t` broadcasts
as usual.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "PREDICTIONS",
    "eps_from_v",
    "eps_from_x0",
    "expand_to",
    "to_eps",
    "to_v",
    "to_x0",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
]

PREDICTIONS = ("x0", "eps", "v")


def expand_to(a, x: jax.Array) -> jax.Array:
    """Appends trailing singleton axes to `a` until it has as many axes as `x`.

    A scalar or a per-example array `[B]` then broadcasts onto `x [B, N, d]`.
    """
    a = jnp.asarray(a)
    if a.ndim > x.ndim:
        raise ValueError(
            f"A per-example coefficient of shape {a.shape} has more axes than the data of "
            f"shape {x.shape}; give one value per leading index of the data."
        )
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def x0_from_eps(z_t: jax.Array, eps: jax.Array, alpha, sigma) -> jax.Array:
    """`x0 = (z_t - sigma_t eps) / alpha_t`, from `z_t = alpha_t x0 + sigma_t eps`."""
    return (z_t - expand_to(sigma, z_t) * eps) / expand_to(alpha, z_t)


def eps_from_x0(z_t: jax.Array, x0: jax.Array, alpha, sigma) -> jax.Array:
    """`eps = (z_t - alpha_t x0) / sigma_t`, from `z_t = alpha_t x0 + sigma_t eps`."""
    return (z_t - expand_to(alpha, z_t) * x0) / expand_to(sigma, z_t)


def v_from_x0_eps(x0: jax.Array, eps: jax.Array, alpha, sigma) -> jax.Array:
    """The velocity `v = alpha_t eps - sigma_t x0` (Salimans & Ho, 2022)."""
    return expand_to(alpha, eps) * eps - expand_to(sigma, x0) * x0


def x0_from_v(z_t: jax.Array, v: jax.Array, alpha, sigma) -> jax.Array:
    """`x0 = alpha_t z_t - sigma_t v` (needs `alpha_t^2 + sigma_t^2 = 1`)."""
    return expand_to(alpha, z_t) * z_t - expand_to(sigma, z_t) * v


def eps_from_v(z_t: jax.Array, v: jax.Array, alpha, sigma) -> jax.Array:
    """`eps = sigma_t z_t + alpha_t v` (needs `alpha_t^2 + sigma_t^2 = 1`)."""
    return expand_to(sigma, z_t) * z_t + expand_to(alpha, z_t) * v


def _check_kind(kind: str) -> None:
    if kind not in PREDICTIONS:
        raise ValueError(
            f"Unknown prediction kind {kind!r}; expected one of {PREDICTIONS} "
            "(clean data x0, noise eps, or velocity v = alpha eps - sigma x0)."
        )


# _CONVERSIONS[target][kind]: `(z_t, pred, alpha, sigma) -> target` for `kind != target`.
_CONVERSIONS = {
    "x0": {"eps": x0_from_eps, "v": x0_from_v},
    "eps": {"x0": eps_from_x0, "v": eps_from_v},
}


def _convert(pred: jax.Array, kind: str, target: str, z_t: jax.Array, alpha, sigma) -> jax.Array:
    """`pred` of kind `kind` as a `target`-prediction ("x0" or "eps")."""
    _check_kind(kind)
    if kind == target:
        return pred
    return _CONVERSIONS[target][kind](z_t, pred, alpha, sigma)


def to_x0(pred: jax.Array, kind: str, z_t: jax.Array, alpha, sigma) -> jax.Array:
    """Converts a model output `pred` of kind "x0", "eps" or "v" to an x0-prediction."""
    return _convert(pred, kind, "x0", z_t, alpha, sigma)


def to_eps(pred: jax.Array, kind: str, z_t: jax.Array, alpha, sigma) -> jax.Array:
    """Converts a model output `pred` of kind "x0", "eps" or "v" to an eps-prediction."""
    return _convert(pred, kind, "eps", z_t, alpha, sigma)


def to_v(pred: jax.Array, kind: str, z_t: jax.Array, alpha, sigma) -> jax.Array:
    """Converts a model output `pred` of kind "x0", "eps" or "v" to a v-prediction."""
    _check_kind(kind)
    if kind == "v":
        return pred
    x0 = to_x0(pred, kind, z_t, alpha, sigma)
    eps = to_eps(pred, kind, z_t, alpha, sigma)
    return v_from_x0_eps(x0, eps, alpha, sigma)
