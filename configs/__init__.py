"""Experiment configs: each `configs/<name>.py` is `get_config(arg)` with its variants.

`python -m experiments.train --config configs/<name>.py:<arg>` loads them from the file;
in Python, `configs.get_config("<name>", arg)` does the same.
"""

from __future__ import annotations

import importlib
import os

import ml_collections


def names() -> list[str]:
    """The config files of this folder (without the shared `*common` modules)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(
        f[:-3]
        for f in os.listdir(here)
        if f.endswith(".py") and not f.startswith("_") and not f.endswith("common.py")
    )


def get_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """The config of `configs/<name>.py` for variant `arg` (None: its default)."""
    if name not in names():
        raise ValueError(f"Unknown config {name!r}; expected one of {names()}.")
    return importlib.import_module(f"configs.{name}").get_config(arg)
