"""write_summaries: the config as text and the `*_png` pictures of the metrics as images."""

from __future__ import annotations

import ml_collections
import numpy as np

from experiments.common.summaries import write_summaries
from symdiff_jax.data.drawing import molecule_grid_png


class RecordingWriter:
    def __init__(self):
        self.calls = []

    def write_config(self, config, *, step=0, name="config"):
        self.calls.append(("config", step, config))

    def write_image(self, step, name, image):
        self.calls.append(("image", step, name, np.asarray(image)))

    def flush(self):
        self.calls.append(("flush",))


def test_config_and_sample_grid_reach_the_writer(tmp_path):
    x = np.array([[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]])
    png = molecule_grid_png(tmp_path / "samples.png", x, np.array([[8, 1, 1]]), panel_size=64)
    config = ml_collections.ConfigDict({"seed": 3})
    writer = RecordingWriter()
    metrics = {"samples_png": png, "missing_png": str(tmp_path / "nope.png"), "validity": 1.0}
    assert write_summaries(writer, 7, config, metrics) == ["samples"]
    kinds = [c[0] for c in writer.calls]
    assert kinds == ["config", "image", "flush"]
    assert writer.calls[0][1:] == (7, config)
    _, step, name, image = writer.calls[1]
    assert (step, name) == (7, "samples") and image.shape[:2] == (64, 64)
    assert 0.0 <= image.min() and image.max() <= 1.0 and image[..., :3].std() > 0.01
    assert write_summaries(None, 7, config, metrics) == []
