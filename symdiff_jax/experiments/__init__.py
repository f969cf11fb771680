"""Experiment runners: each module exposes `run(config, workdir) -> dict[str, float]`.

`python -m experiments.train --config configs/<name>.py` picks the runner named by
`config.experiment` from `EXPERIMENTS`, writes `config.json`, calls `run`, and writes the
returned flat metrics to `metrics.json`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXPERIMENTS = {
    "conformers": "symdiff_jax.experiments.conformers",
    "geom_drugs": "symdiff_jax.experiments.qm9",
    "qm9": "symdiff_jax.experiments.qm9",
    "toy_1d": "symdiff_jax.experiments.toy_1d",
    "toy_2d": "symdiff_jax.experiments.toy_2d",
}


def get_experiment(name: str) -> ModuleType:
    """Imports the runner module of experiment `name`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}; expected one of {sorted(EXPERIMENTS)}.")
    return importlib.import_module(EXPERIMENTS[name])
