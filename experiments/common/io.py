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


_NON_FINITE_TEXT = ("nan", "inf", "-inf", "infinity", "-infinity")


def non_finite_numbers(tree: Mapping[str, Any], prefix: str = "config") -> list[str]:
    """`"<key> = <value>"` for every NaN/Inf float (or its text, as older config.json files
    stored it) in a nested mapping and its lists."""
    found = []
    for key, value in tree.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            found.extend(non_finite_numbers(value, name))
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if (isinstance(v, float) and not math.isfinite(v)) or (
                isinstance(v, str) and v.strip().lower() in _NON_FINITE_TEXT
            ):
                found.append(f"{name} = {v!r}")
    return found


def write_config(workdir: str, config) -> str:
    """Writes `<workdir>/config.json` from an ml_collections.ConfigDict.

    Raises:
      ValueError: the config holds a NaN or Inf number (JSON cannot store it exactly).
    """
    path = os.path.join(workdir, "config.json")
    data = config.to_dict()
    bad = non_finite_numbers(data)
    if bad:
        raise ValueError(
            f"Not writing {path}: config numbers must be finite; got {', '.join(bad)}."
        )
    write_json(path, data)
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
    """The config of a run: the one its checkpoints were made with
    (`<workdir>/checkpoints/config.json`) if present, else `<workdir>/config.json`.

    Raises:
      FileNotFoundError: the workdir has no config.json (the message says how to train one).
      ValueError: the file is not valid JSON, not a mapping, or holds NaN/Inf numbers (the
        message names the file).
    """
    path = os.path.join(checkpoint_dir(workdir), "config.json")
    if not os.path.exists(path):
        path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No config.json in {workdir!r}: not a training workdir. Train first with "
            "`python -m experiments.train --config configs/<name>.py --workdir <dir>`."
        )
    try:
        with open(path) as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"Config file {path} is not valid JSON ({err}); restore it from the run's "
            "command line or a backup."
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"Config file {path} holds a {type(data).__name__}, not a mapping.")
    bad = non_finite_numbers(data)
    if bad:
        raise ValueError(
            f"Config file {path} holds non-finite numbers ({', '.join(bad)}); such a run "
            "cannot be sampled or resumed. Fix the values in the file or train again."
        )
    return ml_collections.ConfigDict(data)


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
