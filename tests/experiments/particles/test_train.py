"""Particle experiments: config variants, one train step + sampling + metrics per family."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import configs
from configs import particles_common
from experiments.particles import train as particle_train
from experiments.particles.input_pipeline import load_splits
from experiments.particles.model import build_net
from experiments.particles.sampling import generate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# One variant of each family: EGNN flow, learned-gamma flow, Haar score, augmented DiT,
# symmetrised target.
FAMILIES = ("egnn_flow", "symdiff", "symdiff_h_score", "dit_aug", "symdiff_target")
METRIC_KEYS = ("energy_w2", "distance_w2", "distance_tv", "sample_s_per_1000")


@pytest.mark.parametrize("system", ["dw4", "lj13"])
def test_every_variant_resolves(system):
    expected = {
        "egnn_flow": ("egnn", False, "flow", "data"),
        "dit_aug": ("dit", True, "flow", "data"),
        "symdiff_h_score_target": ("symdiff_h", False, "score", "symmetrised"),
        "symdiff_target": ("symdiff", False, "flow", "symmetrised"),
    }
    for variant in particles_common.variants():
        for arg in (variant, variant + ",smoke"):
            c = configs.get_config(system, arg)
            assert c.experiment == "particles" and c.system == system
            got = (c.model.kind, c.model.augment, c.generator, c.diffusion.x_target)
            assert got == particles_common.parse_variant(variant)
            if variant in expected:
                assert got == expected[variant], variant
    default = configs.get_config(system)
    assert default.model.kind in ("symdiff", "symdiff_h") and default.train.time_budget_s == 1800
    assert default.diffusion.x_target == "symmetrised"  # the DW4 table's best SymDiff
    with pytest.raises(ValueError, match="Unknown particle variant 'dit_score'"):
        configs.get_config(system, "dit_score")


@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory):
    config = configs.get_config("dw4", "smoke")
    config.data.cache_dir = str(tmp_path_factory.mktemp("particles"))
    return config.data.cache_dir, load_splits(config)


def _config(variant, cache_dir):
    c = configs.get_config("dw4", variant + ",smoke")
    c.data.cache_dir = cache_dir
    return c


@pytest.mark.parametrize("variant", FAMILIES)
def test_train_step_sample_and_metrics(tiny_splits, variant):
    cache_dir, splits = tiny_splits
    c = _config(variant, cache_dir)
    graphdef, params = nnx.split(build_net(c, jax.random.key(0)), nnx.Param)
    loss_fn = particle_train.make_loss_fn(c)
    batch = {"x": splits["train"][: c.batch_size]}

    def mean_loss(p):
        out = loss_fn(nnx.merge(graphdef, p), batch, jax.random.key(1))["loss"]
        assert out.shape == (c.batch_size,)
        return out.mean()

    def grad_norms(p):
        loss, grads = jax.value_and_grad(mean_loss)(p)
        assert np.isfinite(float(loss))
        tree = nnx.to_pure_dict(grads)
        return grads, {k: float(optax.tree.norm(v)) for k, v in tree.items()}

    grads, norms = grad_norms(params)
    assert norms["net"] > 0 and all(np.isfinite(v) for v in norms.values()), norms
    params = optax.apply_updates(params, jax.tree.map(lambda g: -1e-2 * g, grads))
    if c.model.kind == "symdiff":
        # The learned gamma is trained through the loss (once the zero-initialised DiT
        # read-out has moved, R v(R^T x) depends on R).
        assert grad_norms(params)[1]["gamma_net"] > 0

    samples, seconds = generate(c, graphdef, params, jax.random.key(2), 12)
    assert samples.shape == (12, 4, 2) and np.isfinite(samples).all() and seconds > 0
    # CoM-free up to float32 rounding of the coordinates.
    assert np.abs(samples.mean(axis=1)).max() <= 1e-5 * max(1.0, np.abs(samples).max())
    scores = particle_train.final_scores(
        c, "", graphdef, params, jax.random.key(3), splits, write=False
    )
    for key in METRIC_KEYS:
        assert np.isfinite(scores[key]), (key, scores)
    assert ("nll" in scores) == (variant == "egnn_flow")
    assert scores["reference"] == "own test"


@pytest.mark.slow
def test_cli_writes_metrics_samples_and_plot(tiny_splits, tmp_path):
    cache_dir, _ = tiny_splits
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "--config=configs/dw4.py:egnn_flow,smoke",
            f"--workdir={workdir}",
            f"--config.data.cache_dir={cache_dir}",
        ],
        cwd=REPO,
        env=dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(workdir / "metrics.json") as f:
        metrics = json.load(f)
    for key in METRIC_KEYS + ("nll",):
        assert isinstance(metrics[key], float), (key, metrics)
    samples = np.load(workdir / "samples.npy")
    assert samples.shape == (16, 4, 2)
    assert np.abs(samples.mean(axis=1)).max() <= 1e-5 * max(1.0, np.abs(samples).max())
    assert (workdir / "histograms.png").stat().st_size > 0
    assert (workdir / "config.json").exists()
