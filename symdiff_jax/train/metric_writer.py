"""Scalar metrics to a JSON Lines file and to TensorBoard.

``MetricWriter(workdir)`` appends one line per ``write_scalars`` call to
``<workdir>/metrics.jsonl``::

    {"step": 100, "train/loss": 0.52, "train/grad_norm": NaN}

and, unless ``tensorboard=False``, writes the same scalars as TensorBoard summaries to an
event file under ``<workdir>/tensorboard/`` (via tensorboardX's ``SummaryWriter``; view
with ``tensorboard --logdir <workdir>/tensorboard``), together with images (e.g. grids
of samples, ``write_image``) and text (e.g. the run's configuration, ``write_config``).

Non-finite values are written as they are: the JSON file uses Python's ``json`` tokens
``NaN``, ``Infinity`` and ``-Infinity`` (not strict JSON, but ``json.loads`` and
:func:`read_metrics_jsonl` read them back as the same floats), and TensorBoard stores them
as IEEE values. Each line is flushed when written, so a crashed run keeps every line.

A writer opened on a workdir that already has metrics appends (a resumed run keeps the
earlier lines; steps written again after a resume then appear twice in the JSON file, in
the order written) and starts a new event file next to the old ones. ``SummaryWriter``
writes from a background thread and its own flush does not wait for it, so ``flush``
closes the event file (every event is then on disk) and the next write starts another.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter

__all__ = ["MetricWriter", "read_metrics_jsonl"]

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _as_float(name: str, value: Any) -> float:
    """A metric value as a Python float (accepts numbers, 0-d and size-1 arrays)."""
    array = np.asarray(value)
    if array.size != 1 or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise ValueError(
            f"Scalar {name!r} must be a single real number, got {array.dtype} array of shape "
            f"{array.shape}. Reduce it (e.g. jnp.mean) before writing."
        )
    if np.iscomplexobj(array):
        raise ValueError(f"Scalar {name!r} must be real, got complex value {array.item()!r}.")
    return float(array.reshape(()))


class MetricWriter:
    """Writes scalar metrics to ``<workdir>/metrics.jsonl`` and TensorBoard.

    Args:
      workdir: Run directory (created if missing).
      tensorboard: Also write TensorBoard event files under ``<workdir>/tensorboard/``.

    Use as a context manager, or call ``close`` at the end of the run.
    """

    def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True):
        self.workdir = os.path.abspath(os.fspath(workdir))
        os.makedirs(self.workdir, exist_ok=True)
        self.path = os.path.join(self.workdir, METRICS_FILE)
        self._tb_dir = os.path.join(self.workdir, TENSORBOARD_DIR) if tensorboard else None
        self._tb: SummaryWriter | None = None
        self._file = open(self.path, "a", encoding="utf-8")
        # A run killed in the middle of a line leaves no final newline; start on a new line
        # so that the broken line does not swallow the first line written now.
        if self._file.tell() > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write("\n")
                    self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file is None

    def _check_open(self) -> None:
        if self._file is None:
            raise RuntimeError(f"MetricWriter for {self.workdir} is closed; open a new one.")

    def _summary_writer(self) -> SummaryWriter | None:
        """The open TensorBoard writer (started on first use), or None without TensorBoard."""
        if self._tb_dir is None:
            return None
        if self._tb is None:
            # tensorboardX names event files by whole seconds: two writers started within
            # one second would share, and truncate, one file. The suffix keeps names unique
            # and in creation order when sorted.
            suffix = f".{time.time_ns():020d}.{os.getpid()}"
            self._tb = SummaryWriter(self._tb_dir, filename_suffix=suffix)
        return self._tb

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Writes one line ``{"step": step, **scalars}`` and one TensorBoard point per scalar.

        Args:
          step: Training step (integer).
          scalars: Mapping from metric name (e.g. ``"train/loss"``) to a number or a
            size-1 array (JAX arrays are fetched to the host).
        """
        self._check_open()
        if isinstance(step, bool) or not isinstance(step, int | np.integer):
            raise TypeError(f"step must be an integer, got {step!r} ({type(step).__name__}).")
        if not isinstance(scalars, Mapping):
            raise TypeError(f"scalars must be a mapping name -> number, got {type(scalars)}.")
        values = {}
        for name, value in scalars.items():
            if not isinstance(name, str):
                raise TypeError(f"Scalar names must be strings, got {name!r}.")
            if name == "step":
                raise ValueError("'step' is reserved for the step number; rename that scalar.")
            values[name] = _as_float(name, value)
        step = int(step)
        self._file.write(json.dumps({"step": step, **values}, allow_nan=True) + "\n")
        self._file.flush()
        tb = self._summary_writer()
        if tb is not None:
            wall_time = time.time()
            for name, value in values.items():
                tb.add_scalar(name, value, step, walltime=wall_time)

    def write_text(self, step: int, name: str, text: str) -> None:
        """Writes a text summary to TensorBoard (no-op when ``tensorboard=False``)."""
        self._check_open()
        tb = self._summary_writer()
        if tb is not None:
            tb.add_text(name, str(text), int(step))

    def write_config(self, config: Any, *, step: int = 0, name: str = "config") -> None:
        """Writes a run's configuration to TensorBoard as text (no-op without TensorBoard).

        Args:
          config: a mapping (written as indented JSON; values JSON cannot hold are written
            with ``str``), an object with ``to_dict()`` (e.g. an ``ml_collections``
            ``ConfigDict``), or a string (written as it is).
          step: the step to file it under.
          name: the text summary's tag.
        """
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        if not isinstance(config, str):
            config = json.dumps(config, indent=2, sort_keys=True, default=str)
        # TensorBoard renders text as Markdown: a code block keeps the layout.
        self.write_text(step, name, "```\n" + config + "\n```")

    def write_image(self, step: int, name: str, image: Any) -> None:
        """Writes one image (e.g. a grid of samples) to TensorBoard (no-op without it).

        Args:
          step: training step.
          name: the image's tag.
          image: ``[H, W]`` (grey) or ``[H, W, 3|4]`` array, floats in [0, 1] or uint8.
        """
        self._check_open()
        array = np.asarray(image)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
            raise ValueError(
                f"Image {name!r} must have shape [H, W] or [H, W, 1|3|4], got {array.shape}."
            )
        if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"Image {name!r} must be uint8 or floats in [0, 1], got {array.dtype}."
            )
        tb = self._summary_writer()
        if tb is not None:
            tb.add_image(name, array, int(step), dataformats="HW" if array.ndim == 2 else "HWC")

    def flush(self) -> None:
        """Puts every event written so far on disk (JSON lines are flushed when written).

        The TensorBoard event file is closed; the next write starts a new one.
        """
        self._check_open()
        self._file.flush()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def close(self) -> None:
        """Flushes and closes both outputs. Safe to call twice."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_file", None) is not None:
            try:
                self.close()
            except Exception:  # Interpreter shutdown: nothing sensible left to do.
                pass


def read_metrics_jsonl(path: str | os.PathLike, *, skip_invalid: bool = False) -> list[dict]:
    """Reads a metrics file written by :class:`MetricWriter`.

    Args:
      path: The ``metrics.jsonl`` file, or the workdir that holds it.
      skip_invalid: Skip (with a warning) lines that are not valid JSON objects, e.g. a
        line cut short by a crash; by default such a line raises.

    Returns:
      One dict per line in file order, with ``NaN``/``Infinity`` read back as float
      nan/inf.

    Raises:
      FileNotFoundError: No such file.
      ValueError: A line is not a JSON object (names file and line number).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            except ValueError as e:
                message = f"{path}:{number}: not a metrics line ({e}): {line.strip()[:200]!r}"
                if skip_invalid:
                    warnings.warn(message + "; skipped.", stacklevel=2)
                    continue
                raise ValueError(message + ". Pass skip_invalid=True to skip damaged lines.") from e
            records.append(record)
    return records
