"""A step's outputs over a fixed validation set: fixed batches, batch `i` with `fold_in(key, i)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


def batch_outputs(
    step: Callable, params: Any, batches: Sequence[Any], key: jax.Array, name: str = "loss"
) -> list[np.ndarray]:
    """The per-example output `name` of `step(params, batch, key_i)` for every batch.

    Args:
      step: `(params, batch, key) -> dict` of per-example arrays.
      params: the parameters the step is scored at.
      batches: the fixed batches.
      key: the base key; batch `i` gets `fold_in(key, i)`.
      name: which output to keep.

    Returns:
      One host array per batch.
    """
    return [
        np.asarray(jax.device_get(step(params, b, jax.random.fold_in(key, i))[name]))
        for i, b in enumerate(batches)
    ]


def mean_loss(step: Callable, params: Any, batches: Sequence[Any], key: jax.Array) -> float:
    """Mean per-example loss over fixed batches with fixed keys (see `batch_outputs`)."""
    return float(np.concatenate(batch_outputs(step, params, batches, key)).mean())
