"""Optimisers: AdamW (optionally AMSGrad, as the official SymDiff), clipped, with warmup."""

from __future__ import annotations

import optax


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
    if learning_rate <= 0 or weight_decay < 0:
        raise ValueError(
            f"learning_rate must be > 0 and weight_decay >= 0; got {learning_rate}, {weight_decay}."
        )
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
