"""Optimisers: AdamW (optionally AMSGrad, as the official SymDiff), clipped, with warmup."""

from __future__ import annotations

import math
import numbers

import optax


def _check_number(name: str, value: object, *, positive: bool) -> None:
    """Raises ValueError unless `value` is a finite real number, > 0 or >= 0."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{name} must be a finite number {bound}, got {value!r}. Fix it in the "
            "optimiser configuration."
        )


def make_optimizer(
    learning_rate: float = 2e-4,
    *,
    weight_decay: float = 1e-12,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = True,
    clip_norm: float | None = 2.0,
    warmup_steps: int = 0,
) -> optax.GradientTransformation:
    """`clip_by_global_norm -> Adam(AMSGrad) -> decoupled weight decay -> -lr`.

    The decay is decoupled as in PyTorch's `AdamW` (`p -= lr wd p`).
    SymDiff's QM9 setting (official config, facts): lr 2e-4, weight decay 1e-12,
    AMSGrad, gradient-norm clip 2.0.

    Args:
      learning_rate: peak learning rate.
      weight_decay: decoupled weight decay.
      b1, b2, eps: Adam moments and epsilon.
      amsgrad: use the running maximum of the second moment.
      clip_norm: clip the global gradient norm to this value (None: no clipping).
      warmup_steps: linear warmup from 0 over this many steps (0: constant rate).

    Returns:
      an `optax.GradientTransformation`.
    """
    _check_number("learning_rate", learning_rate, positive=True)
    _check_number("weight_decay", weight_decay, positive=False)
    _check_number("eps", eps, positive=False)
    for name, value in (("b1", b1), ("b2", b2)):
        _check_number(name, value, positive=False)
        if value >= 1:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
    if clip_norm is not None:
        _check_number("clip_norm", clip_norm, positive=True)
    integral = isinstance(warmup_steps, numbers.Integral) and not isinstance(warmup_steps, bool)
    if not integral or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}.")
    if warmup_steps:
        lr = optax.linear_schedule(0.0, learning_rate, int(warmup_steps))
    else:
        lr = learning_rate
    scale = optax.scale_by_amsgrad if amsgrad else optax.scale_by_adam
    parts = [] if clip_norm is None else [optax.clip_by_global_norm(float(clip_norm))]
    parts += [
        scale(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(lr),
    ]
    return optax.chain(*parts)
