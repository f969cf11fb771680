"""Small helpers both toys share: metric-key spelling and summaries over seeds."""

from __future__ import annotations

import numpy as np


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
