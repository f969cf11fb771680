"""`configs/geom_symdiff.py:smoke` end to end on small files in EDM's GEOM-Drugs format."""

import os

import numpy as np
import pytest

import configs
from experiments.common.io import write_config
from experiments.qm9 import train
from symdiff_jax.testing.fake_data import write_fake_geom_drugs


@pytest.mark.slow
def test_geom_symdiff_smoke_runs_end_to_end(tmp_path):
    write_fake_geom_drugs(tmp_path / "geom", num_molecules=4, conformations=30, sizes=(4, 10))
    config = configs.get_config("geom_symdiff", "smoke")
    config.data.source = str(tmp_path / "geom")
    config.data.max_atoms = 12
    config.evaluate.num_samples = 4
    config.sample.num_steps = 3
    config.sample.batch_size = 4
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    write_config(workdir, config)
    assert config.experiment == "geom_drugs"
    metrics = train.run(config, workdir)
    assert metrics["steps"] == config.num_train_steps
    assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["val/nll"])
    assert 0.0 <= metrics["atom_stability"] <= 1.0
    samples = np.load(os.path.join(workdir, "samples", "samples.npz"))
    allowed = {0, 1, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 33, 35, 53, 80, 83}
    assert set(np.unique(samples["atomic_numbers"])) <= allowed
    assert samples["positions"].shape == (4, 12, 3)
