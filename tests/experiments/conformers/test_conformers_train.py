"""Conformer experiments end to end on tiny configs, and the resumable batch stream."""

from __future__ import annotations

import math

import numpy as np
import pytest

import configs
from configs.conformers_common import NAMES
from experiments.conformers import train as conformers
from symdiff_jax.conformers.datasets import load_conformer_data, train_batches
from symdiff_jax.testing.fake_data import write_example_geom


def conformer_config(name: str, size: str | None = None):
    return configs.get_config(name, size)


@pytest.fixture
def fast_compile():
    """XLA's optimisation passes dominate the compile time of these tiny runs."""
    import jax

    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


METRICS = ("cov_r@0.1_mean", "cov_r@0.5_median", "amr_r_mean", "amr_p_median", "val/loss")


def _check_metrics(metrics, workdir):
    for k in METRICS:
        assert k in metrics and math.isfinite(metrics[k]), k
    assert 0.0 <= metrics["cov_r@0.5_mean"] <= 1.0
    assert metrics["amr_r_mean"] > 0.0
    assert (workdir / "samples" / "generated.sdf").stat().st_size > 0
    assert metrics["generated_conformers"] == 2 * metrics["test_references"]


@pytest.fixture(scope="module")
def geom_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("geom")
    info = write_example_geom(root, num_conformers=2, split_sizes=(4, 1, 1))
    return info["data_dir"]


def test_geom_qm9_flow_target_smoke_runs_end_to_end(tmp_path, geom_dir, fast_compile):
    """The published GEOM layout (small files written here) -> safe cache -> train -> score."""
    config = conformer_config("geom_qm9_flow_target", "smoke")
    config.data.geom_dir = str(geom_dir)
    config.data.cache_dir = str(tmp_path / "tables")
    config.batch_size = 4
    metrics = conformers.run(config, str(tmp_path))
    _check_metrics(metrics, tmp_path)
    assert metrics["train_conformers"] == 8  # 4 molecules x 2 conformers
    # A second load reads the cached table (no pickle is opened again).
    table = load_conformer_data(config.data, "train")
    assert len(table["positions"]) == 8


def test_qm9_conformers_diffusion_target_smoke(tmp_path, fast_compile):
    config = conformer_config("qm9_conformers_diff_target", "smoke")
    config.data.cache_dir = str(tmp_path / "tables")
    metrics = conformers.run(config, str(tmp_path))
    _check_metrics(metrics, tmp_path)


def test_train_batches_resume_exactly(tmp_path):
    config = conformer_config("qm9_conformers_flow", "smoke")
    config.data.cache_dir = str(tmp_path / "tables")
    table = load_conformer_data(config.data, "train")
    kw = dict(seed=3, automorphism_width=4)
    straight = [b for _, b in zip(range(12), train_batches(table, 8, **kw), strict=False)]
    resumed = [
        b for _, b in zip(range(5), train_batches(table, 8, start_step=7, **kw), strict=False)
    ]
    for a, b in zip(straight[7:], resumed, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(straight[0]["positions"], straight[8]["positions"])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", ["", "small", "smoke"])
def test_configs_build(name, size):
    c = conformer_config(name, size)
    assert c.experiment == "conformers"
    assert (c.diffusion.x_target == "symmetrised") == name.endswith("_target")


def test_bad_config_values_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown config"):
        conformer_config("qm9_conformers_fast")
    with pytest.raises(ValueError, match="size"):
        conformer_config("qm9_conformers_flow", "tiny")
    c = conformer_config("qm9_conformers_flow", "smoke")
    c.data.source = "pubchem"
    with pytest.raises(ValueError, match="data.source"):
        load_conformer_data(c.data, "train")


def test_missing_geom_files_name_what_to_get(tmp_path):
    c = conformer_config("geom_qm9_flow", "smoke")
    with pytest.raises(FileNotFoundError, match="geom_dir"):
        load_conformer_data(c.data, "train")
    c.data.geom_dir = str(tmp_path / "nowhere" / "QM9")
    c.data.cache_dir = str(tmp_path / "tables")
    with pytest.raises(FileNotFoundError, match="split|pickle"):
        load_conformer_data(c.data, "train")
