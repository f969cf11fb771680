"""The on-disk format of a model shipped with the package, and its atomic writer.

A shipped model is a directory `<models root>/<name>/` of three files:

  - `params.npz`: the EMA parameters, float32, one array per parameter under its flat
    name (the `nnx.to_pure_dict` path joined by "/", e.g. `eps_net/blocks/0/attn/qkv/kernel`);
  - `config.json`: the training run's config (the `ConfigDict` that builds the model);
  - `metrics.json`: the model card: `format`, `name`, `step` (training steps),
    `num_features` (atom feature width the denoiser takes), `num_parameters`,
    `train_size_histogram` (molecule-size counts of the training split, for sampling
    sizes without the dataset) and what the run recorded (training curve summary,
    evaluation scores).

`write_pretrained` writes all three into a temporary directory next to the destination
and renames it into place, so a reader sees the old model or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

#: Version of the directory format `write_pretrained` writes (`metrics.json["format"]`).
FORMAT = 1
#: The files of a shipped model directory.
FILES = ("params.npz", "config.json", "metrics.json")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(name: str) -> str:
    """`name` if it can name a model directory (letters, digits, `_`, `.`, `-`)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"A model name is letters, digits, '_', '.' or '-' (not starting with '.' or "
            f"'-'); got {name!r}."
        )
    return name


def _key_name(entry: Any) -> str:
    return str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry))))


def named_leaves(params: Any) -> list[tuple[str, Any]]:
    """`[(flat name, leaf)]` of an `nnx.State` (or a nested dict), in pytree order.

    Names are the pytree paths joined by "/" (`nnx.to_pure_dict` paths for an `nnx.State`).
    """
    tree = nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [("/".join(_key_name(p) for p in path), leaf) for path, leaf in leaves]


def flat_params(params: Any) -> dict[str, np.ndarray]:
    """`{flat name: float32 array}` of an `nnx.State` (or a nested dict of arrays).

    Raises:
      ValueError: a parameter that is not floating point, or holds NaN or Inf.
    """
    out = {}
    for name, leaf in named_leaves(params):
        value = np.asarray(jax.device_get(leaf))
        if not jnp.issubdtype(value.dtype, jnp.floating):  # bfloat16 too
            raise ValueError(f"Parameter {name} has dtype {value.dtype}; expected a float array.")
        value = value.astype(np.float32)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"Parameter {name} holds NaN or Inf; nothing was written.")
        out[name] = value
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(_jsonable(data), f, indent=2, sort_keys=True)
        f.write("\n")


def write_pretrained(
    out_root: str,
    name: str,
    params: Any,
    config: Any,
    card: Mapping[str, Any],
) -> str:
    """Writes a shipped model directory `<out_root>/<name>/` atomically.

    Args:
      out_root: the models root (e.g. `symdiff_jax/pretrained/models`); created if missing.
      name: the model's name (`check_name`).
      params: the EMA parameters (`nnx.State` or nested dict of arrays), stored float32.
      config: the run's config (`ConfigDict` or a mapping), stored as `config.json`.
      card: `metrics.json` entries; must hold `step`, `num_features` and
        `train_size_histogram`; `format`, `name` and `num_parameters` are set here.

    Returns:
      The written directory. An existing model of that name is replaced as a whole.

    Raises:
      ValueError: a bad name, a card without the required keys, or non-finite parameters.
    """
    check_name(name)
    missing = [k for k in ("step", "num_features", "train_size_histogram") if k not in card]
    if missing:
        raise ValueError(f"The model card lacks {missing}; nothing was written.")
    flat = flat_params(params)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    card = {
        **card,
        "format": FORMAT,
        "name": name,
        "num_parameters": int(sum(v.size for v in flat.values())),
    }
    os.makedirs(out_root, exist_ok=True)
    dest = os.path.join(out_root, name)
    tmp = tempfile.mkdtemp(dir=out_root, prefix=f".{name}.")
    old = None
    try:
        with open(os.path.join(tmp, "params.npz"), "wb") as f:
            np.savez(f, **flat)
        _write_json(os.path.join(tmp, "config.json"), config_dict)
        _write_json(os.path.join(tmp, "metrics.json"), card)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for file in FILES:
            os.chmod(os.path.join(tmp, file), 0o666 & ~umask)
        if os.path.exists(dest):
            old = tempfile.mkdtemp(dir=out_root, prefix=f".{name}.old.")
            os.rmdir(old)
            os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except BaseException:
            if old is not None:
                os.rename(old, dest)
                old = None
            raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest
