"""`experiments.particles.check_data`: our Metropolis splits against published ones."""

import json
import os

import numpy as np

from experiments.particles import check_data
from symdiff_jax.metrics.particles import particle_metrics
from symdiff_jax.systems import get_system
from tests.cli_helpers import run_cli

SIZES, SAMPLING = "64,16,16", "16,200,20"


def _write_published(directory, rng):
    """Stand-ins for the published DW4 files: flat [M, 8], not CoM-centred (as published)."""
    splits = {s: rng.normal(size=(40, 8)).astype(np.float32) + 3.0 for s in ("val", "test")}
    for split, flat in splits.items():
        np.save(os.path.join(directory, f"{split}_split_DW4.npy"), flat)
    return {s: f.reshape(-1, 4, 2) - f.reshape(-1, 4, 2).mean(1, keepdims=True) for s, f in splits.items()}  # fmt: skip


def test_both_comparisons_equal_the_metrics_of_the_arrays(tmp_path):
    published = _write_published(tmp_path, np.random.default_rng(0))
    cache = str(tmp_path / "cache")
    got = check_data.check("dw4", str(tmp_path), cache, SIZES, SAMPLING)
    energy = get_system("dw4").energy
    floor = particle_metrics(published["val"], published["test"], energy)
    for key, value in floor.items():
        np.testing.assert_allclose(got["published_val_vs_published_test"][key], value, rtol=1e-6)
    ours = np.load(os.path.join(cache, os.listdir(cache)[0]))["split_val"]
    mine = particle_metrics(ours, published["val"], energy)
    for key, value in mine.items():
        np.testing.assert_allclose(got["ours_val_vs_published_val"][key], value, rtol=1e-6)


def test_the_cli_prints_json_and_names_a_missing_reference(tmp_path):
    _write_published(tmp_path, np.random.default_rng(1))
    base = ["--system=dw4", f"--cache_dir={tmp_path / 'cache'}", f"--sizes={SIZES}",
            f"--sampling={SAMPLING}"]  # fmt: skip
    proc = run_cli("particles.check_data", *base, f"--reference={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(json.loads(proc.stdout)) == {
        "ours_val_vs_published_val",
        "published_val_vs_published_test",
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("particles.check_data", *base, f"--reference={empty}")
    assert proc.returncode != 0 and "val_split_DW4.npy" in proc.stderr
