"""Writing what every experiment run leaves behind: config.json and metrics.json."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(_to_jsonable(data), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


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
