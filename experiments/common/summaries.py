"""What a run shows in TensorBoard besides scalars: its config as text, its pictures as images."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

#: A metric whose key ends with this names a picture file (e.g. `samples_png`).
PICTURE_SUFFIX = "_png"


def read_png(path: str) -> np.ndarray:
    """A PNG file as `[H, W, 3|4]` floats in [0, 1] (matplotlib's reader)."""
    from matplotlib import image

    return np.asarray(image.imread(path), dtype=np.float32)


def write_summaries(writer, step: int, config: Any, metrics: Mapping[str, Any]) -> list[str]:
    """Writes `config` as text and every picture named by a `*_png` metric as an image.

    Args:
      writer: a `symdiff_jax.train.MetricWriter` (None: nothing is written).
      step: the step the summaries are filed under.
      config: the run's config (`MetricWriter.write_config`).
      metrics: the run's final metrics; `samples_png: "<path>"` becomes the image
        `samples` (a missing or empty path is left out).

    Returns:
      The image tags written.
    """
    if writer is None:
        return []
    writer.write_config(config, step=step)
    tags = []
    for key, path in sorted(metrics.items()):
        if key.endswith(PICTURE_SUFFIX) and isinstance(path, str) and os.path.isfile(path):
            tag = key[: -len(PICTURE_SUFFIX)]
            writer.write_image(step, tag, read_png(path))
            tags.append(tag)
    writer.flush()
    return tags
