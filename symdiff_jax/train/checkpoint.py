"""Checkpoints of training state: the latest few steps plus the best one, via Orbax.

One directory holds one step directory per checkpoint (``<directory>/<step>/``), written
by a single :class:`orbax.checkpoint.CheckpointManager`. Its retention policy keeps

* the ``max_to_keep`` most recent steps, and
* separately, the single best step by ``metrics[best_metric]`` (smallest for
  ``best_mode="min"``, largest for ``"max"``; ties go to the earlier step),

so the best step survives however many later saves follow. A save whose metrics lack
``best_metric``, or carry a NaN/Inf value for it, can never become the best. The metrics
of every save are stored next to its arrays (``<directory>/<step>/metrics/metrics``, JSON),
which is how a new :class:`Checkpointer` on the same directory finds the best step again.

Steps only increase: ``save`` of a step at or below the latest saved step is skipped (it
returns ``False`` and logs a warning) and never overwrites anything on disk.

Restores are checked before any array is read: the step directory must hold its metadata,
and the target must have the checkpoint's keys, shapes and dtypes; every failure raises
:class:`CheckpointError` with a message naming the directory, the step, what is wrong and
what to do. A failed restore only reads: nothing on disk is deleted or rewritten.

Example::

    with Checkpointer(workdir + "/checkpoints", max_to_keep=3) as ckpt:
        ckpt.save(step, {"params": params, "opt_state": opt_state},
                  metrics={"val/nll": 1.23})
        state = ckpt.restore({"params": params, "opt_state": opt_state})  # latest
        best = ckpt.restore(abstract_state, best=True)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["CheckpointError", "Checkpointer"]

_logger = logging.getLogger(__name__)

# Item and file names inside one step directory, as Orbax 0.12 writes them.
_ITEM = "default"
_STEP_METADATA_FILE = "_CHECKPOINT_METADATA"
_TREE_METADATA_FILE = "_METADATA"
_MAX_LISTED = 20


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, read, or matched to the restore target."""


@dataclasses.dataclass
class _KeepBest:
    """Orbax preservation policy: keep the single step with the best finite metric.

    Checkpoints are visited in save order (which is step order, since steps only
    increase); a later checkpoint replaces the current best only when strictly better.
    """

    metric: str
    mode: str

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> list[bool]:
        del context
        best_index, best_value = None, None
        for index, info in enumerate(checkpoints):
            value = _finite_metric(info.metrics, self.metric)
            if value is None:
                continue
            if best_value is None or _better(value, best_value, self.mode):
                best_index, best_value = index, value
        return [index == best_index for index in range(len(checkpoints))]


def _better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == "min" else a > b


def _finite_metric(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    """``metrics[name]`` as a float if present and finite, else None."""
    if not metrics or name not in metrics:
        return None
    try:
        value = float(metrics[name])
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Metric values as plain floats (accepts Python numbers and 0-d arrays)."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics must be a mapping from name to number, got {type(metrics).__name__}."
        )
    out = {}
    for name, value in metrics.items():
        array = np.asarray(value)
        if array.size != 1 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(
                f"metrics[{name!r}] must be a single number, got {array.dtype} array of "
                f"shape {array.shape}. Reduce it (e.g. mean) before saving."
            )
        out[str(name)] = float(array.reshape(()))
    return out


def _key_str(path: tuple[str, ...]) -> str:
    return "/".join(path)


def _leaf_signature(leaf: Any) -> tuple[tuple[int, ...] | None, np.dtype | None]:
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


def _abstract_target(target: Any) -> Any:
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


def _tree_differences(stored: Mapping[tuple, Any], wanted: Mapping[tuple, Any]) -> list[str]:
    """Human-readable lines for every key/shape/dtype where checkpoint and target differ."""
    lines = []
    missing = sorted(set(stored) - set(wanted))
    extra = sorted(set(wanted) - set(stored))
    if missing:
        lines.append(f"  in the checkpoint but not in the target ({len(missing)}):")
        lines += [f"    {_key_str(k)}" for k in missing[:_MAX_LISTED]]
        if len(missing) > _MAX_LISTED:
            lines.append(f"    ... and {len(missing) - _MAX_LISTED} more")
    if extra:
        lines.append(f"  in the target but not in the checkpoint ({len(extra)}):")
        lines += [f"    {_key_str(k)}" for k in extra[:_MAX_LISTED]]
        if len(extra) > _MAX_LISTED:
            lines.append(f"    ... and {len(extra) - _MAX_LISTED} more")
    changed = []
    for k in sorted(set(stored) & set(wanted)):
        meta = stored[k]
        stored_shape = getattr(meta, "shape", None)
        stored_dtype = getattr(meta, "dtype", None)
        shape, dtype = _leaf_signature(wanted[k])
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
        lines += changed[:_MAX_LISTED]
        if len(changed) > _MAX_LISTED:
            lines.append(f"    ... and {len(changed) - _MAX_LISTED} more")
    return lines


class Checkpointer:
    """Saves and restores pytrees of arrays; keeps the latest steps and the best step.

    Args:
      directory: Folder holding the step directories (created on the first save; a
        Checkpointer on a missing folder is fine for reading and has no steps).
      max_to_keep: Number of most recent steps to keep (>= 1). The best step is kept in
        addition, so at most ``max_to_keep + 1`` steps are on disk.
      best_metric: Name of the metric that ranks steps, or None to keep only the latest.
      best_mode: ``"min"`` (smaller is better) or ``"max"``.
      async_save: If True, ``save`` returns once the arrays are copied off the devices and
        writes in a background thread; call ``wait_until_finished`` (``close`` and every
        restore do) before relying on the files.

    The state may be any pytree of arrays: nested dicts, NamedTuples (optax states),
    ``flax.nnx.State``, 0-d arrays, typed PRNG key arrays (stored as their key data), NumPy
    arrays and Python scalars.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int = 3,
        best_metric: str | None = "val/nll",
        best_mode: str = "min",
        async_save: bool = False,
    ):
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be an integer >= 1, got {max_to_keep!r}.")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}.")
        if best_metric is not None and not isinstance(best_metric, str):
            raise TypeError(f"best_metric must be a string or None, got {best_metric!r}.")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_to_keep = max_to_keep
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.async_save = bool(async_save)
        self._manager: ocp.CheckpointManager | None = None
        self._closed = False

    # ------------------------------------------------------------------ manager

    def _get_manager(self, *, create: bool) -> ocp.CheckpointManager | None:
        """The Orbax manager; None while the directory does not exist and create=False."""
        if self._closed:
            raise CheckpointError(
                f"Checkpointer for {self.directory} is closed; create a new one to use it."
            )
        if self._manager is not None:
            return self._manager
        if not create and not os.path.isdir(self.directory):
            return None
        policies = [ocp.checkpoint_managers.LatestN(n=self.max_to_keep)]
        if self.best_metric is not None:
            policies.append(_KeepBest(metric=self.best_metric, mode=self.best_mode))
        options = ocp.CheckpointManagerOptions(
            # best_fn is set so that Orbax stores each save's metrics; retention is
            # decided by preservation_policy alone.
            best_fn=self._rank,
            best_mode=self.best_mode,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=self.async_save,
            create=True,
            cleanup_tmp_directories=False,
        )
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
            )
        except Exception as e:  # Orbax reads every step's metrics on start-up.
            raise CheckpointError(
                f"Could not open the checkpoint directory {self.directory}: "
                f"{type(e).__name__}: {e}. A step directory inside it is probably damaged "
                "(e.g. an unreadable metrics/metrics file); move or delete that step "
                "directory and try again."
            ) from e
        return self._manager

    def _rank(self, metrics: Mapping[str, Any]) -> float:
        """Orbax ``best_fn``: the best metric, with missing/non-finite ranked worst."""
        value = _finite_metric(metrics, self.best_metric) if self.best_metric else None
        if value is None:
            return math.inf if self.best_mode == "min" else -math.inf
        return value

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    # ------------------------------------------------------------------ queries

    def all_steps(self) -> list[int]:
        """All steps on disk (latest ones and the best one), ascending."""
        manager = self._get_manager(create=False)
        if manager is None:
            return []
        return sorted(int(s) for s in manager.all_steps())

    def latest_step(self) -> int | None:
        """The largest saved step, or None if there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def metrics(self, step: int) -> dict[str, float] | None:
        """The metrics saved with ``step`` ({} if none were given); None if not on disk."""
        manager = self._get_manager(create=False)
        if manager is None or step not in self.all_steps():
            return None
        self.wait_until_finished()
        stored = manager.metrics(step)
        return dict(stored) if stored is not None else {}

    def best_step(self) -> int | None:
        """The step with the best finite ``best_metric``, or None (also if it is None)."""
        if self.best_metric is None:
            return None
        self.wait_until_finished()
        best, best_value = None, None
        for step in self.all_steps():
            value = _finite_metric(self.metrics(step), self.best_metric)
            if value is not None and (
                best_value is None or _better(value, best_value, self.best_mode)
            ):
                best, best_value = step, value
        return best

    # ------------------------------------------------------------------ save

    def save(self, step: int, state: Any, *, metrics: Mapping[str, float] | None = None) -> bool:
        """Saves ``state`` as ``step``; returns True if written, False if skipped.

        Args:
          step: Non-negative integer, larger than every step already saved. A step at or
            below the latest saved step is skipped: nothing is written or overwritten,
            a warning is logged, and False is returned.
          state: Pytree of arrays.
          metrics: Optional flat mapping name -> number stored with the step; the value of
            ``best_metric`` (if present and finite) ranks the step for ``best_step``.

        Returns:
          True if the checkpoint was written (or, with ``async_save``, started).
        """
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}.")
        step = int(step)
        clean = _clean_metrics(metrics)
        manager = self._get_manager(create=True)
        latest = self.latest_step()
        if latest is not None and step <= latest:
            what = "already exists" if step in self.all_steps() else "is older than the latest"
            _logger.warning(
                "Checkpoint for step %d not saved: step %d %s in %s (latest %d). Steps must "
                "increase; delete the later step directories to save this step again.",
                step,
                step,
                what,
                self.directory,
                latest,
            )
            return False
        return bool(
            manager.save(step, args=ocp.args.StandardSave(state), metrics=clean, force=True)
        )

    # ------------------------------------------------------------------ restore

    def restore(self, target: Any, step: int | None = None, *, best: bool = False) -> Any:
        """Restores a saved step into the structure (and shardings) of ``target``.

        Args:
          target: Pytree with the structure of the saved state. Leaves may be concrete
            arrays or ``jax.ShapeDtypeStruct`` (e.g. from ``jax.eval_shape``); a leaf's
            ``sharding``, when given, decides where the restored array is placed, so a
            checkpoint written on any device layout restores onto the target's. Leaves
            without a sharding go to the default device.
          step: Step to restore; default: the latest (or the best, with ``best=True``).
          best: Restore the best step by ``best_metric``.

        Returns:
          A pytree of the target's structure holding the restored, bit-exact values.

        Raises:
          CheckpointError: no checkpoints, unknown step, no best step, damaged step
            directory, or a target whose keys/shapes/dtypes differ from the checkpoint.
        """
        steps = self.all_steps()
        if not steps:
            reason = "does not exist" if not os.path.isdir(self.directory) else "has no steps"
            raise CheckpointError(
                f"No checkpoint to restore: the directory {self.directory} {reason}. Check "
                "the path (it should be the folder given to Checkpointer when saving), or "
                "start from freshly initialised state."
            )
        self.wait_until_finished()
        if best:
            best_step = self.best_step()
            if best_step is None:
                raise CheckpointError(
                    f"No best checkpoint in {self.directory}: no saved step (of {steps}) has "
                    f"a finite {self.best_metric!r} metric (best_metric={self.best_metric!r}). "
                    "Pass metrics={...} to save(), or restore without best=True."
                )
            if step is not None and step != best_step:
                raise ValueError(
                    f"restore(step={step}, best=True): the best step in {self.directory} is "
                    f"{best_step}. Pass either step or best=True."
                )
            step = best_step
        elif step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(
                f"No checkpoint for step {step} in {self.directory}; available steps: "
                f"{steps}. Pass one of these as step=, or omit it for the latest."
            )
        step = int(step)
        step_dir = self._step_dir(step)
        earlier = [s for s in steps if s < step]
        fix = (
            f"restore(step={earlier[-1]}) for an earlier checkpoint"
            if earlier
            else "restore another step"
        )
        damaged = (
            f"Checkpoint step directory {step_dir} (step {step}) is damaged"
            f" and cannot be restored. Use {fix}, or delete {step_dir} (and any step written "
            "after it) and restore again."
        )
        self._check_metadata_files(step_dir, damaged)
        manager = self._get_manager(create=False)
        try:
            stored_tree = manager.item_metadata(step)
            stored_tree = getattr(stored_tree, "tree", stored_tree)
            if stored_tree is None:
                raise ValueError("no array metadata found")
            stored = ocp.tree.to_flat_dict(stored_tree)
        except Exception as e:
            raise CheckpointError(f"{damaged} Reading its metadata failed: {e}") from e
        wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(target, keep_empty_nodes=True))
        differences = _tree_differences(stored, wanted)
        if differences:
            raise CheckpointError(
                f"The restore target does not match checkpoint step {step} in {step_dir}:\n"
                + "\n".join(differences)
                + "\nBuild the target from the same model/optimizer configuration that was "
                "saved (e.g. jax.eval_shape of the init function), or restore into a "
                "matching sub-tree."
            )
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(_abstract_target(target)))
        except Exception as e:
            raise CheckpointError(f"{damaged} {type(e).__name__}: {_short(e)}") from e

    @staticmethod
    def _check_metadata_files(step_dir: str, damaged: str) -> None:
        """The two JSON metadata files Orbax writes for every step must exist and parse."""
        for relative in (_STEP_METADATA_FILE, os.path.join(_ITEM, _TREE_METADATA_FILE)):
            path = os.path.join(step_dir, relative)
            try:
                with open(path, encoding="utf-8") as f:
                    json.load(f)
            except FileNotFoundError as e:
                raise CheckpointError(f"{damaged} Missing metadata file {path}.") from e
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{damaged} Unreadable metadata file {path}: {e}") from e

    # ------------------------------------------------------------------ lifecycle

    def wait_until_finished(self) -> None:
        """Blocks until a background (async) save has been written and committed."""
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager. Safe to call twice."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None
        self._closed = True

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Checkpointer({self.directory!r}, max_to_keep={self.max_to_keep}, "
            f"best_metric={self.best_metric!r}, best_mode={self.best_mode!r}, "
            f"async_save={self.async_save})"
        )


def _short(error: Exception, limit: int = 500) -> str:
    """The first line of an error message, cut to ``limit`` characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if len(text) <= limit else text[:limit] + " ..."
