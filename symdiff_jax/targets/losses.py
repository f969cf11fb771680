"""Losses towards the symmetrised target phi_G and towards the plain data target x0.

Paper 000 trains the denoiser on

    L(phi) = E[ w(t) ||phi(x_t, t) - phi_G(x_t, t)||^2 ]          (their eq. 4)

instead of the usual `E[ w(t) ||phi(x_t, t) - x0||^2 ]` (their eq. 3, the data
target). Both are given here in the three standard parametrisations of the model
output: the target x0* (phi_G or x0) becomes, through `z_t = alpha x0 + sigma eps`,

    x0-form: x0*,    eps-form: eps* = (x_t - alpha x0*) / sigma,
    v-form:  v* = alpha eps* - sigma x0*.

For a prediction converted between forms the losses differ only by a factor:
`L_eps = (alpha / sigma)^2 L_x0` and `L_v = L_x0 / sigma^2` (with alpha^2 + sigma^2 = 1).
Every loss is the per-example sum over real atoms and coordinates, unreduced, with
the target held constant (`stop_gradient`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symdiff_jax.diffusion.parametrisation import PREDICTIONS, eps_from_x0, v_from_x0_eps

__all__ = ["data_target_loss", "symmetrised_target_loss", "target_in_form"]


def target_in_form(x0_target: jax.Array, x_t: jax.Array | None, alpha, sigma, form: str):
    """Expresses a clean-data target in the parametrisation `form` ("x0", "eps", "v").

    Args:
      x0_target: `[..., N, d]` target in x0 form (phi_G or x0).
      x_t: `[..., N, d]` noisy input (unused for "x0").
      alpha, sigma: scalars or per-example `[...]` (unused for "x0").
      form: "x0", "eps" or "v".

    Returns:
      `[..., N, d]` target: x0*, `(x_t - alpha x0*) / sigma`, or `alpha eps* - sigma x0*`.
    """
    if form not in PREDICTIONS:
        raise ValueError(
            f"Unknown loss form {form!r}; expected one of {PREDICTIONS} (x0-, eps- or "
            "v-prediction)."
        )
    if form == "x0":
        return x0_target
    if x_t is None or alpha is None or sigma is None:
        raise ValueError(
            f"The {form!r} form of the loss needs x_t, alpha and sigma to convert the target; "
            "got None for at least one of them."
        )
    if jnp.shape(x_t) != jnp.shape(x0_target):
        raise ValueError(
            f"x_t of shape {jnp.shape(x_t)} must match the target of shape {jnp.shape(x0_target)}."
        )
    eps = eps_from_x0(x_t, x0_target, alpha, sigma)
    return eps if form == "eps" else v_from_x0_eps(x0_target, eps, alpha, sigma)


def _weighted_squared_error(pred, target, mask, weight) -> jax.Array:
    pred = jnp.asarray(pred)
    target = jax.lax.stop_gradient(jnp.asarray(target))
    if pred.shape != target.shape or pred.ndim < 2:
        raise ValueError(
            f"pred must have the shape [..., N, d] of the target; got pred {pred.shape} "
            f"and target {target.shape}."
        )
    err = jnp.sum((pred - target) ** 2, axis=-1)  # [..., N]
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != pred.shape[:-1]:
            raise ValueError(
                f"mask must have shape [..., N] = {pred.shape[:-1]} to match pred of shape "
                f"{pred.shape}; got {mask.shape}."
            )
        err = err * mask.astype(err.dtype)
    loss = jnp.sum(err, axis=-1)  # [...]
    if weight is not None:
        weight = jnp.asarray(weight)
        if weight.ndim > loss.ndim:
            raise ValueError(
                f"weight w(t) must be a scalar or per-example [...] = {loss.shape}; got "
                f"shape {weight.shape}."
            )
        loss = loss * weight
    return loss


def symmetrised_target_loss(
    pred: jax.Array,
    phi_g: jax.Array,
    *,
    form: str = "x0",
    x_t: jax.Array | None = None,
    alpha=None,
    sigma=None,
    mask: jax.Array | None = None,
    weight=None,
) -> jax.Array:
    """Symmetrised-target loss `w(t) ||pred - target(phi_G)||^2`, paper 000, eq. (4).

    Args:
      pred: `[..., N, d]` model output in the parametrisation `form`.
      phi_g: `[..., N, d]` symmetrised target in x0 form (from
        `symmetrised_target_exact` or `symmetrised_target_mc`); held constant.
      form: "x0" (default), "eps" (target `(x_t - alpha phi_G) / sigma`) or "v"
        (target `alpha eps_G - sigma phi_G`).
      x_t: `[..., N, d]` noisy input; needed for "eps" and "v".
      alpha, sigma: scalars or per-example `[...]`; needed for "eps" and "v".
      mask: optional `[..., N]`; only real atoms are summed.
      weight: optional w(t), scalar or per-example `[...]`; 1 when None.

    Returns:
      `[...]` unreduced per-example loss (sum over real atoms and coordinates).
    """
    target = target_in_form(jnp.asarray(phi_g), x_t, alpha, sigma, form)
    return _weighted_squared_error(pred, target, mask, weight)


def data_target_loss(
    pred: jax.Array,
    x0: jax.Array,
    *,
    form: str = "x0",
    x_t: jax.Array | None = None,
    alpha=None,
    sigma=None,
    mask: jax.Array | None = None,
    weight=None,
) -> jax.Array:
    """Plain denoising loss `w(t) ||pred - target(x0)||^2`, paper 000, eq. (3).

    The same as `symmetrised_target_loss` with phi_G replaced by the clean sample x0
    that generated x_t (in eps form the target is then the true noise eps).

    Args:
      pred: `[..., N, d]` model output in the parametrisation `form`.
      x0: `[..., N, d]` clean data.
      form, x_t, alpha, sigma, mask, weight: as in `symmetrised_target_loss`.

    Returns:
      `[...]` unreduced per-example loss.
    """
    return symmetrised_target_loss(
        pred, x0, form=form, x_t=x_t, alpha=alpha, sigma=sigma, mask=mask, weight=weight
    )
