"""One training step of every experiment family, through `experiments.train`'s dispatch.

Each family's smoke config, cut to a single optimiser step and a handful of samples, runs
in process from `config.experiment` to its flat metrics: QM9 diffusion and flow matching
(and so GEOM-Drugs, the same module) and conformers through the shared run skeleton (`experiments.common.run`),
the two toys through their own vmapped loops.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

import configs
from experiments.common.io import write_config
from experiments.train import experiments


def _one_step(name: str):
    config = configs.get_config(name, "smoke")
    if config.experiment in ("qm9", "conformers"):
        config.num_train_steps = 1
        config.train.checkpoint_every = 1
        config.train.eval_every = 1
        config.sample.num_steps = 2
        config.evaluate.write_files = False
    if config.experiment == "qm9":
        config.evaluate.num_samples = 2
        config.sample.batch_size = 2
    if config.experiment == "conformers":
        config.evaluate.num_molecules = 1
    if config.experiment == "toy_1d":
        config.num_seeds = 1
        config.num_train_steps = config.eval_every = 1
        config.num_val_samples = config.num_samples = 8
        config.num_sampling_steps = 2
        config.grad_var_times = (0.5,)
        config.grad_var_num_draws = 4
        config.loss_curve_window = 1
    if config.experiment == "toy_2d":
        config.train.num_steps = config.train.chunk = 1
        config.eval.num_samples = 4
        config.eval.sampling_steps = (2,)
        config.eval.plot_steps = 2
        config.eval.num_plot_samples = 2
    return config


@pytest.mark.parametrize(
    "name", ["qm9_symdiff", "qm9_symdiff_flow", "qm9_conformers_flow", "toy_1d", "toy_2d"]
)
def test_one_step_of_each_family(name, tmp_path):
    if name.startswith("qm9") and importlib.util.find_spec("qm9pack") is None:
        pytest.skip("needs the qm9pack wheel (the QM9 molecules and conformers)")
    config = _one_step(name)
    if config.experiment == "conformers":
        config.data.cache_dir = str(tmp_path / "tables")
    workdir = str(tmp_path / "run")
    write_config(workdir, config)
    metrics = experiments()[config.experiment].run(config, workdir)
    assert math.isfinite(metrics["train/loss"]), metrics
    if config.experiment in ("qm9", "conformers"):
        assert metrics["steps"] == 1 and metrics["resumed_from_step"] == 0
        assert metrics["params"] > 0
        val = "val/nll" if config.get("generator") == "diffusion" else "val/loss"
        assert math.isfinite(metrics[val])


def test_every_config_names_a_known_experiment():
    runners = experiments()
    for name in configs.names():
        config = configs.get_config(name, "smoke")
        assert config.experiment in runners, name
        with open(f"{configs.__path__[0]}/{name}.py") as f:
            assert f.readline().startswith("# COMMAND: python -m experiments.train"), name
