"""Pytree checks around checkpoints: a restore target against the stored tree, where its
arrays go, and which leaves hold NaN or Inf.

`tree_differences` compares the flat `{key path: metadata}` of a stored tree (as Orbax
reports it) with a restore target and lists every missing, extra, reshaped or retyped
leaf; `abstract_target` turns a target into restore items carrying their shardings;
`non_finite_leaves` names the floating-point leaves holding a NaN or Inf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "MAX_LISTED",
    "abstract_target",
    "leaf_signature",
    "non_finite_leaves",
    "tree_differences",
]

MAX_LISTED = 20


def _key_str(path: tuple[str, ...]) -> str:
    return "/".join(path)


def leaf_signature(leaf: Any) -> tuple[tuple[int, ...] | None, np.dtype | None]:
    """(shape, dtype) as stored on disk; PRNG key arrays are stored as their key data."""
    if isinstance(leaf, bool | int | float | complex):
        return (), None  # Python scalars: Orbax picks the dtype itself.
    shape = getattr(leaf, "shape", None)
    dtype = getattr(leaf, "dtype", None)
    if shape is None or dtype is None:
        return None, None
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype))
        return tuple(data.shape), np.dtype(data.dtype)
    return tuple(shape), np.dtype(dtype)


def abstract_target(target: Any) -> Any:
    """Target leaves as Orbax restore items, each with the sharding to restore onto.

    jax.Array -> ShapeDtypeStruct with the array's sharding; ShapeDtypeStruct without a
    sharding -> on the default device; NumPy arrays and Python scalars stay as they are
    (restored as NumPy / Python values).
    """
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def one(leaf):
        if isinstance(leaf, jax.Array):
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
        if isinstance(leaf, jax.ShapeDtypeStruct):
            if leaf.sharding is None:
                return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=default)
            return leaf
        return leaf

    return jax.tree.map(one, target)


def tree_differences(stored: Mapping[tuple, Any], wanted: Mapping[tuple, Any]) -> list[str]:
    """Human-readable lines for every key/shape/dtype where checkpoint and target differ."""
    lines = []
    missing = sorted(set(stored) - set(wanted))
    extra = sorted(set(wanted) - set(stored))
    if missing:
        lines.append(f"  in the checkpoint but not in the target ({len(missing)}):")
        lines += [f"    {_key_str(k)}" for k in missing[:MAX_LISTED]]
        if len(missing) > MAX_LISTED:
            lines.append(f"    ... and {len(missing) - MAX_LISTED} more")
    if extra:
        lines.append(f"  in the target but not in the checkpoint ({len(extra)}):")
        lines += [f"    {_key_str(k)}" for k in extra[:MAX_LISTED]]
        if len(extra) > MAX_LISTED:
            lines.append(f"    ... and {len(extra) - MAX_LISTED} more")
    changed = []
    for k in sorted(set(stored) & set(wanted)):
        meta = stored[k]
        stored_shape = getattr(meta, "shape", None)
        stored_dtype = getattr(meta, "dtype", None)
        shape, dtype = leaf_signature(wanted[k])
        bad_shape = shape is not None and stored_shape is not None
        bad_shape = bad_shape and tuple(stored_shape) != shape
        bad_dtype = dtype is not None and stored_dtype is not None
        bad_dtype = bad_dtype and np.dtype(stored_dtype) != dtype
        if bad_shape or bad_dtype:
            stored_desc = f"{tuple(stored_shape)} {np.dtype(stored_dtype).name}"
            wanted_desc = f"{shape} {dtype.name if dtype is not None else '(python scalar)'}"
            changed.append(f"    {_key_str(k)}: checkpoint {stored_desc}, target {wanted_desc}")
    if changed:
        lines.append(f"  shape or dtype differs ({len(changed)}):")
        lines += changed[:MAX_LISTED]
        if len(changed) > MAX_LISTED:
            lines.append(f"    ... and {len(changed) - MAX_LISTED} more")
    return lines


def non_finite_leaves(state: Any) -> list[str]:
    """Key paths of the floating-point leaves of `state` that hold a NaN or Inf.

    JAX arrays are checked on their devices (one transfer of one flag per leaf).
    """
    paths, flags = [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        dtype = getattr(leaf, "dtype", None)
        if isinstance(leaf, float):
            flags.append(math.isfinite(leaf))
        elif dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
            continue
        elif isinstance(leaf, np.ndarray):
            flags.append(bool(np.all(np.isfinite(leaf))))
        else:
            flags.append(jnp.all(jnp.isfinite(leaf)))
        paths.append(jax.tree_util.keystr(path))
    flags = jax.device_get(flags)
    return [path for path, ok in zip(paths, flags, strict=True) if not ok]
