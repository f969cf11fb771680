"""What every run leaves in its workdir: config.json, metrics.json and checkpoints/."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from symdiff_jax.data.atomic import atomic_write


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return _to_jsonable(np.asarray(value).tolist())
    if hasattr(value, "__array__"):
        return _to_jsonable(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def write_json(path: str, data: Mapping[str, Any]) -> None:
    """Writes `data` as indented JSON atomically (a temporary file, then a rename)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(_to_jsonable(data), f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(path, write)


def write_config(workdir: str, config) -> str:
    """Writes `<workdir>/config.json` from an ml_collections.ConfigDict."""
    path = os.path.join(workdir, "config.json")
    write_json(path, config.to_dict())
    return path


def write_metrics(workdir: str, metrics: Mapping[str, Any]) -> str:
    """Merges `metrics` (flat keys) into `<workdir>/metrics.json`, keeping earlier keys."""
    path = os.path.join(workdir, "metrics.json")
    existing = {}
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
    existing.update(metrics)
    write_json(path, existing)
    return path


def load_config_json(workdir: str) -> ml_collections.ConfigDict:
    """The config a run wrote to `<workdir>/config.json`.

    Raises:
      FileNotFoundError: the workdir has no config.json (the message says how to train one).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No config.json in {workdir!r}: not a training workdir. Train first with "
            "`python -m experiments.train --config configs/<name>.py --workdir <dir>`."
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def experiment_of(workdir: str) -> str | None:
    """The `experiment` of a workdir's config.json, or None when there is none to read."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            return json.load(f).get("experiment")
    except (OSError, ValueError):
        return None


def checkpoint_dir(workdir: str) -> str:
    """`<workdir>/checkpoints`: where a run's `Checkpointer` writes."""
    return os.path.join(workdir, "checkpoints")
