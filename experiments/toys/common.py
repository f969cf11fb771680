"""Small helpers both toys share: the scanned optimizer step, metric-key spelling and
summaries over seeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax


def scan_train_step(
    loss_fn: Callable[[Any, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation,
    key: jax.Array,
) -> Callable:
    """The `lax.scan` body `((params, opt_state), step) -> ((params, opt_state), loss)`:
    one `optimizer` step on `loss_fn(params, fold_in(key, step))`."""

    def body(carry, step):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, jax.random.fold_in(key, step))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return body


def time_key(t: float) -> str:
    """The metric-key suffix of a diffusion time, e.g. `t_0.5`."""
    return f"t_{t:g}"


def quantile_summary(values: np.ndarray) -> dict[str, float]:
    """`{"": median, "_mean", "_std", "_q25", "_q75"}` of values over seeds (float64)."""
    v = np.asarray(values, np.float64)
    return {
        "": float(np.median(v)),
        "_mean": float(np.mean(v)),
        "_std": float(np.std(v)),
        "_q25": float(np.quantile(v, 0.25)),
        "_q75": float(np.quantile(v, 0.75)),
    }
