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


def test_config_with_a_non_finite_number_is_not_written(tmp_path):
    config = ml_collections.ConfigDict({"optim": {"learning_rate": math.nan, "betas": [0.9, 1.0]}})
    with pytest.raises(ValueError, match=r"config.optim.learning_rate = nan"):
        io.write_config(str(tmp_path), config)
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ('{"seed": 1,', "not valid JSON"),
        ("[1, 2]", "not a mapping"),
        ('{"optim": {"learning_rate": "nan"}}', "config.optim.learning_rate = 'nan'"),
        ('{"optim": {"learning_rate": NaN}}', "config.optim.learning_rate = nan"),
    ],
)
def test_a_damaged_config_json_is_named_with_its_path(tmp_path, text, phrase):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        io.load_config_json(str(tmp_path))
    assert str(path) in str(info.value) and phrase in str(info.value)


def test_the_original_config_next_to_the_checkpoints_wins(tmp_path):
    io.write_config(str(tmp_path), ml_collections.ConfigDict({"seed": 2}))
    (tmp_path / "checkpoints").mkdir()
    io.write_config(str(tmp_path / "checkpoints"), ml_collections.ConfigDict({"seed": 1}))
    assert io.load_config_json(str(tmp_path)).seed == 1
