"""`experiments.common.io`: config.json and metrics.json of a workdir."""

import json
import math

import ml_collections
import numpy as np
import pytest

from experiments.common import io


def test_config_round_trip_and_missing_config(tmp_path):
    config = ml_collections.ConfigDict({"experiment": "toy_2d", "train": {"steps": 3}})
    io.write_config(str(tmp_path), config)
    assert io.load_config_json(str(tmp_path)).to_dict() == config.to_dict()
    assert io.experiment_of(str(tmp_path)) == "toy_2d"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert io.experiment_of(str(empty)) is None
    with pytest.raises(FileNotFoundError, match="No config.json.*experiments.train"):
        io.load_config_json(str(empty))


def test_write_metrics_merges_and_keeps_earlier_keys(tmp_path):
    io.write_metrics(str(tmp_path), {"a": 1.0, "b": np.float32(2.0)})
    path = io.write_metrics(str(tmp_path), {"b": 3.0, "c": math.inf})
    with open(path) as f:
        metrics = json.load(f)
    assert metrics == {"a": 1.0, "b": 3.0, "c": "inf"}
    assert io.checkpoint_dir(str(tmp_path)) == str(tmp_path / "checkpoints")
