"""Checkpoints of training state over Orbax's `CheckpointManager`: latest steps, best step,
verified content.

One directory holds one step directory per checkpoint (``<directory>/<step>/``), written
by a single :class:`orbax.checkpoint.CheckpointManager` whose preservation policy keeps
the ``max_to_keep`` most recent steps (``LatestN``) and, besides, the single best step by
``metrics[best_metric]`` (``BestN``; smallest for ``best_mode="min"``, largest for
``"max"``; on a tie the later step). A save whose metrics lack ``best_metric``, or carry
a NaN/Inf value for it, can never become the best.

Every step carries a manifest of the sha256 of its files (see
:mod:`symdiff_jax.train.manifest`), written once Orbax has committed the step. A restore
checks it first: a damaged step (a changed, truncated or missing file) is named in a
warning and the newest intact step is restored instead; an explicitly requested step
(``step=`` or ``best=True``) that is damaged raises. A step without a manifest (the
process stopped between Orbax's commit and the hashing) is restored with a warning.

Saves refuse a state with a NaN or Inf floating-point value (``CheckpointError``), so a
checkpoint never holds one. Steps only increase: ``save`` of a step at or below the
latest saved step is skipped (it returns ``False`` and logs a warning) and never
overwrites anything on disk.

Restores are checked before any array is read: the target must have the checkpoint's
keys, shapes and dtypes; every failure raises :class:`CheckpointError` with a message
naming the directory, the step, what is wrong and what to do. A restore only reads:
nothing on disk is deleted or rewritten.

Example::

    with Checkpointer(workdir + "/checkpoints", max_to_keep=3) as ckpt:
        ckpt.save(step, {"params": params, "opt_state": opt_state},
                  metrics={"val/nll": 1.23})
        state = ckpt.restore({"params": params, "opt_state": opt_state})  # latest
        best = ckpt.restore(abstract_state, best=True)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from symdiff_jax.train.manifest import verify_manifest, write_manifest
from symdiff_jax.train.tree_checks import (
    MAX_LISTED,
    abstract_target,
    non_finite_leaves,
    tree_differences,
)

__all__ = ["CheckpointError", "Checkpointer"]

_logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, read, verified, or matched to the restore target."""


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
        writes in a background thread; call ``wait_until_finished`` (``close``, the next
        save and every restore do) before relying on the files. The manifest of an
        asynchronous save is written by that wait.

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
        self._unhashed: list[int] = []
        self._ignored: list[int] = []  # damaged steps the manager does not see
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
            # BestN keeps the last of the checkpoints sorted by increasing value: rank so
            # that larger is better and missing/non-finite metrics rank last.
            sign = -1.0 if self.best_mode == "min" else 1.0
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda m: sign * self._rank(m),
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            # best_fn is always set so that Orbax stores every save's metrics.
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
            return self._manager
        except Exception as e:  # Orbax reads every step's metrics on start-up.
            error = e
        # A step whose files differ from its manifest is left out (and left on disk); the
        # manager then opens on the intact steps.
        damaged = self._damaged_steps_on_disk()
        if damaged:
            _logger.warning(
                "Checkpoint directory %s: damaged step directories (content differs from "
                "their manifest) are ignored: %s. Move them out of the folder.",
                self.directory,
                damaged,
            )
            excluded = frozenset(int(os.path.basename(d)) for d in damaged)
            self._ignored = sorted(excluded)
            options = dataclasses.replace(
                options, step_name_format=_Without(ocp.step.standard_name_format(), excluded)
            )
            try:
                self._manager = ocp.CheckpointManager(
                    self.directory,
                    options=options,
                    item_handlers=ocp.StandardCheckpointHandler(),
                )
                return self._manager
            except Exception as e:
                error = e
        where = (
            f"damaged step directories: {damaged}"
            if damaged
            else "a step directory inside it is probably damaged (e.g. unreadable metrics)"
        )
        raise CheckpointError(
            f"Could not open the checkpoint directory {self.directory}: "
            f"{type(error).__name__}: {_short(error)}. {where[0].upper() + where[1:]}; move "
            "that step directory out of the folder and try again."
        ) from error

    def _damaged_steps_on_disk(self) -> list[str]:
        """Paths of the integer-named folders whose files differ from their manifest."""
        out = []
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if name.isdigit() and os.path.isdir(path) and verify_manifest(path):
                out.append(path)
        return out

    def _rank(self, metrics: Mapping[str, Any] | None) -> float:
        """Orbax ``best_fn``: the best metric, with missing/non-finite ranked worst."""
        value = _finite_metric(metrics, self.best_metric) if self.best_metric else None
        if value is None:
            return math.inf if self.best_mode == "min" else -math.inf
        return value

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    # ------------------------------------------------------------------ queries

    def all_steps(self) -> list[int]:
        """All steps on disk (latest ones, the best one, damaged ones), ascending."""
        manager = self._get_manager(create=False)
        if manager is None:
            return []
        return sorted({int(s) for s in manager.all_steps()} | set(self._ignored))

    def latest_step(self) -> int | None:
        """The largest saved step, or None if there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def metrics(self, step: int) -> dict[str, float] | None:
        """The metrics saved with ``step`` ({} if none were given); None if not on disk."""
        manager = self._get_manager(create=False)
        if manager is None or step not in self.all_steps() or step in self._ignored:
            return None
        self.wait_until_finished()
        stored = manager.metrics(step)
        return dict(stored) if stored is not None else {}

    def best_step(self) -> int | None:
        """The step with the best finite ``best_metric`` (the later on a tie), or None."""
        manager = self._get_manager(create=False)
        if self.best_metric is None or manager is None:
            return None
        self.wait_until_finished()
        step = manager.best_step()
        if step is None or _finite_metric(self.metrics(step), self.best_metric) is None:
            return None
        return int(step)

    def verify(self, step: int) -> list[str] | None:
        """Checks ``step``'s files against its manifest.

        Returns:
          None if the step has no manifest; else the list of problems (empty: intact).
        """
        self.wait_until_finished()
        return verify_manifest(self._step_dir(step))

    # ------------------------------------------------------------------ save

    def save(
        self,
        step: int,
        state: Any,
        *,
        metrics: Mapping[str, float] | None = None,
        allow_non_finite: bool = False,
    ) -> bool:
        """Saves ``state`` as ``step``; returns True if written, False if skipped.

        Args:
          step: Non-negative integer, larger than every step already saved. A step at or
            below the latest saved step is skipped: nothing is written or overwritten,
            a warning is logged, and False is returned.
          state: Pytree of arrays.
          metrics: Optional flat mapping name -> number stored with the step; the value of
            ``best_metric`` (if present and finite) ranks the step for ``best_step``.
          allow_non_finite: Save a state holding NaN/Inf values (for arrays that hold
            them by design); by default such a state raises.

        Returns:
          True if the checkpoint was written (or, with ``async_save``, started).

        Raises:
          CheckpointError: the state holds a NaN or Inf (nothing is written).
        """
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}.")
        step = int(step)
        clean = _clean_metrics(metrics)
        if not allow_non_finite:
            bad = non_finite_leaves(state)
            if bad:
                listed = ", ".join(bad[:MAX_LISTED]) + (" ..." if len(bad) > MAX_LISTED else "")
                raise CheckpointError(
                    f"Refusing to save step {step} to {self.directory}: the state holds NaN or "
                    f"Inf values in {len(bad)} leaves ({listed}). The run diverged; resume "
                    "from the last checkpoint with a lower learning rate."
                )
        manager = self._get_manager(create=True)
        self.wait_until_finished()
        latest = self.latest_step()
        if os.path.exists(self._step_dir(step)) and step not in manager.all_steps():
            _logger.warning(
                "Checkpoint for step %d not saved: %s exists and is not a readable step "
                "(damaged, or written by another program); move it out of %s.",
                step,
                self._step_dir(step),
                self.directory,
            )
            return False
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
        try:
            saved = bool(
                manager.save(step, args=ocp.args.StandardSave(state), metrics=clean, force=True)
            )
            if saved:
                self._unhashed.append(step)
                if not self.async_save:
                    self._write_manifests()
        except Exception as e:
            raise _save_error(self.directory, step, e) from e
        return saved

    def _write_manifests(self) -> None:
        """Writes the manifest of every committed step saved by this object without one."""
        on_disk = set(self.all_steps())
        if jax.process_index() == 0:  # one writer on a shared file system
            for step in self._unhashed:
                if step in on_disk:
                    write_manifest(self._step_dir(step))
        self._unhashed = []

    # ------------------------------------------------------------------ restore

    def restore(self, target: Any, step: int | None = None, *, best: bool = False) -> Any:
        """Restores a verified step into the structure (and shardings) of ``target``.

        Args:
          target: Pytree with the structure of the saved state. Leaves may be concrete
            arrays or ``jax.ShapeDtypeStruct`` (e.g. from ``jax.eval_shape``); a leaf's
            ``sharding``, when given, decides where the restored array is placed, so a
            checkpoint written on any device layout restores onto the target's. Leaves
            without a sharding go to the default device.
          step: Step to restore; default: the newest intact step (or the best, with
            ``best=True``). Damaged newer steps are skipped with a warning naming them.
          best: Restore the best step by ``best_metric``.

        Returns:
          A pytree of the target's structure holding the restored, bit-exact values.

        Raises:
          CheckpointError: no checkpoints, unknown step, no best step, a requested step
            (or every step) damaged, or a target whose keys/shapes/dtypes differ from the
            checkpoint.
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
            candidates, explicit = [best_step], True
        elif step is None:
            candidates, explicit = steps[::-1], False
        elif step not in steps:
            raise CheckpointError(
                f"No checkpoint for step {step} in {self.directory}; available steps: "
                f"{steps}. Pass one of these as step=, or omit it for the latest."
            )
        else:
            candidates, explicit = [int(step)], True
        damaged = []
        for candidate in candidates:
            try:
                return self._restore_step(target, candidate, steps)
            except _DamagedStep as e:
                if explicit:
                    raise CheckpointError(str(e)) from e.__cause__
                damaged.append(candidate)
                _logger.warning("%s Falling back to the previous step.", e)
        raise CheckpointError(
            f"Every checkpoint in {self.directory} is damaged (steps {damaged}); nothing "
            "was restored. Restore the folder from a backup, or start from freshly "
            "initialised state in a new directory."
        )

    def _restore_step(self, target: Any, step: int, steps: list[int]) -> Any:
        """Verifies and restores one step; raises _DamagedStep or CheckpointError."""
        step_dir = self._step_dir(step)
        earlier = [s for s in steps if s < step]
        fix = (
            f"restore(step={earlier[-1]}) for an earlier checkpoint"
            if earlier
            else "restore another step"
        )
        damaged = (
            f"Checkpoint step directory {step_dir} (step {step}) is damaged and cannot be "
            f"restored. Use {fix}, or delete {step_dir} (and any step written after it) and "
            "restore again."
        )
        problems = verify_manifest(step_dir)
        if problems:
            listed = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
            raise _DamagedStep(f"{damaged} Files differ from its manifest: {listed}.")
        if problems is None:
            _logger.warning(
                "Checkpoint step %d in %s has no content manifest (the run stopped right "
                "after writing it); restoring it without verification.",
                step,
                step_dir,
            )
        manager = self._get_manager(create=False)
        try:
            stored_tree = manager.item_metadata(step)
            stored_tree = getattr(stored_tree, "tree", stored_tree)
            if stored_tree is None:
                raise ValueError("no array metadata found")
            stored = ocp.tree.to_flat_dict(stored_tree)
        except Exception as e:
            raise _DamagedStep(f"{damaged} Reading its metadata failed: {_short(e)}") from e
        wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(target, keep_empty_nodes=True))
        differences = tree_differences(stored, wanted)
        if differences:
            raise CheckpointError(
                f"The restore target does not match checkpoint step {step} in {step_dir}:\n"
                + "\n".join(differences)
                + "\nBuild the target from the same model/optimizer configuration that was "
                "saved (e.g. jax.eval_shape of the init function), or restore into a "
                "matching sub-tree."
            )
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(abstract_target(target)))
        except Exception as e:
            raise _DamagedStep(f"{damaged} {type(e).__name__}: {_short(e)}") from e

    # ------------------------------------------------------------------ lifecycle

    def wait_until_finished(self) -> None:
        """Blocks until a background (async) save is committed and its manifest written."""
        if self._manager is not None:
            try:
                self._manager.wait_until_finished()
                if self._unhashed:
                    self._write_manifests()
            except Exception as e:
                steps, self._unhashed = self._unhashed, []
                raise _save_error(self.directory, steps, e) from e

    def close(self) -> None:
        """Finishes pending saves and releases the manager. Safe to call twice."""
        if self._manager is not None:
            self.wait_until_finished()
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


@dataclasses.dataclass(frozen=True)
class _Without:
    """An Orbax step ``NameFormat`` that does not see the ``excluded`` steps."""

    base: Any
    excluded: frozenset[int]

    def build_name(self, step: int) -> str:
        return self.base.build_name(step)

    def find_all(self, base_path: Any) -> Iterator[Any]:
        return (m for m in self.base.find_all(base_path) if m.step not in self.excluded)

    def find_step(self, base_path: Any, step: int) -> Any:
        if step in self.excluded:
            raise ValueError(f"step {step} is damaged and ignored")
        return self.base.find_step(base_path, step)


class _DamagedStep(Exception):
    """A step whose files fail verification or cannot be read (restore may fall back)."""


def _save_error(directory: str, step: Any, error: Exception) -> CheckpointError:
    """The error of a failed save: what failed, and that earlier steps are untouched."""
    return CheckpointError(
        f"Saving checkpoint step {step} to {directory} failed: {type(error).__name__}: "
        f"{_short(error)}. Earlier checkpoints are untouched. Fix the cause (e.g. free disk "
        "space) and resume from the latest checkpoint."
    )


def _short(error: Exception, limit: int = 500) -> str:
    """The first line of an error message, cut to ``limit`` characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if len(text) <= limit else text[:limit] + " ..."
