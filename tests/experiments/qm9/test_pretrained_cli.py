"""Shipped and official models in the QM9 commands: `export_workdir`, `--pretrained NAME`,
`--official DIR` of `experiments.sample` / `experiments.evaluate`."""

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import configs
from experiments.common.io import checkpoint_dir, write_config
from experiments.qm9 import evaluate as evaluation
from experiments.qm9 import model
from experiments.qm9.pretrained import (
    export_workdir,
    official_run_config,
    pretrained_run,
    resolve_source,
)
from symdiff_jax.data.writers import load_samples_npz
from symdiff_jax.pretrained import MODELS_ENV, load, read_card
from symdiff_jax.pretrained.export import flat_params
from symdiff_jax.train import Checkpointer
from tests.cli_helpers import REPO, run_cli

OFFICIAL = os.path.join(REPO, "tests", "pretrained", "fixtures", "load_official")
FAST = ("--num_samples=4", "--num_steps=4", "--noprogress")


def _shift(tree, by):
    return jax.tree.map(lambda v: v + by, tree)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    """A smoke QM9 SymDiff workdir with checkpoints at steps 2 and 5 (distinct EMA
    parameters, no training: the export copies whatever the checkpoint holds)."""
    workdir = str(tmp_path_factory.mktemp("qm9_workdir"))
    config = configs.get_config("qm9_symdiff", "smoke")
    write_config(workdir, config)
    _, state, _ = model.initial_state(config, jax.random.key(0))
    with Checkpointer(checkpoint_dir(workdir)) as ckpt:
        for step in (2, 5):
            ckpt.save(
                step,
                state._replace(
                    step=jnp.asarray(step, jnp.int32), ema_params=_shift(state.params, step)
                ),
            )
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 2, "train/loss": 0.5}) + "\n")
        f.write(json.dumps({"step": 5, "train/loss": 0.25, "val/nll": 80.0}) + "\n")
    return workdir


@pytest.fixture(scope="module")
def models_root(workdir, tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("models"))
    export_workdir(workdir, "tiny", root)
    return root


def _tree_hash(directory):
    digest = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(directory)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(path.encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_export_writes_the_newest_ema_parameters(workdir, models_root):
    run = evaluation.load_run(workdir)
    assert run.step == 5
    denoiser, config = load("tiny", models_root=models_root)
    assert config.to_dict() == json.loads(json.dumps(run.config.to_dict()))
    from flax import nnx

    ours, theirs = flat_params(nnx.split(denoiser, nnx.Param)[1]), flat_params(run.params)
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    card = read_card("tiny", models_root)
    assert card["step"] == 5 and card["num_features"] == 6 and card["dataset"] == "qm9"
    assert card["training"]["train/loss"] == 0.25 and card["training"]["val/nll_step"] == 5
    hist = evaluation.train_size_histogram(run.config)
    np.testing.assert_array_equal(card["train_size_histogram"], hist)
    restored, histogram = pretrained_run("tiny", models_root)
    np.testing.assert_array_equal(histogram, hist)
    assert restored.step == 5 and restored.graphdef == run.graphdef


def test_export_skips_a_damaged_newest_step_and_only_reads(workdir, tmp_path):
    import shutil

    copy = str(tmp_path / "run")
    shutil.copytree(workdir, copy)
    step5 = os.path.join(checkpoint_dir(copy), "5")
    largest = max(
        (os.path.join(b, f) for b, _, fs in os.walk(step5) for f in fs), key=os.path.getsize
    )
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 2)
    before = _tree_hash(copy)
    path, card = export_workdir(copy, "fallback", str(tmp_path / "models"))
    assert card["step"] == 2 and os.path.isdir(path)
    assert _tree_hash(copy) == before, "exporting changed the workdir"


def test_exactly_one_model_source():
    with pytest.raises(ValueError, match="exactly one.*none"):
        resolve_source(None, None, None)
    with pytest.raises(ValueError, match="exactly one"):
        resolve_source("w", "tiny", None)


def test_flags_that_do_not_apply_are_refused(workdir, models_root, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, models_root)
    with pytest.raises(ValueError, match="--checkpoint applies to --workdir"):
        resolve_source(None, "tiny", None, checkpoint="best")
    with pytest.raises(ValueError, match="--out applies to --pretrained"):
        resolve_source(workdir, None, None, out="/tmp/x")
    with pytest.raises(ValueError, match="--compute_dtype applies"):
        resolve_source(None, None, "some_dir", compute_dtype="bfloat16")
    with pytest.raises(ValueError, match="available: tiny"):
        resolve_source(None, "nope", None)
    source = resolve_source(None, "tiny", None, out="elsewhere")
    assert source.out_dir == "elsewhere" and source.label == "pretrained:tiny"
    assert resolve_source(None, "tiny", None).out_dir == os.path.join("workdirs", "tiny")


def _official(**changes):
    cfg = {
        "model": "dit_dit_gaussian_dynamics",
        "dataset": "qm9",
        "remove_h": False,
        "include_charges": True,
        "schedule": "polynomial",
        "schedule_power": 2.0,
        "num_steps": 500,
        "precision": 1e-4,
        "normalize_factors": [1.0, 4.0, 10.0],
    }
    return ml_collections.ConfigDict({**cfg, **changes})


def test_official_run_config_takes_the_official_diffusion():
    config = official_run_config(_official())
    assert config.diffusion.schedule == "polynomial_2"
    assert config.diffusion.num_steps == config.sample.num_steps == 500
    assert config.diffusion.precision == 1e-4
    assert config.model.kind == "official_dit_dit_gaussian_dynamics"
    assert official_run_config(_official(schedule_power=1.5)).diffusion.schedule == (
        "polynomial_1.5"
    )
    for change in (
        {"dataset": "geom"},
        {"remove_h": True},
        {"normalize_factors": [1.0, 4.0, 1.0]},
    ):
        with pytest.raises(ValueError, match="Only official QM9 runs"):
            official_run_config(_official(**change))


@pytest.mark.slow
@pytest.mark.allow_nonfinite  # size logits are -inf for sizes the histogram never saw
def test_official_run_samples_with_our_sampler():
    pytest.importorskip("torch")
    from experiments.qm9.pretrained import official_run

    directory = os.path.join(OFFICIAL, "dit_dit_gaussian_dynamics")
    run = official_run(directory)
    assert run.config.diffusion.num_steps == 1000 and run.config.diffusion.precision > 0
    hist = np.zeros(30, np.int64)
    hist[[5, 9]] = 1
    samples = evaluation.draw_samples(run, jax.random.key(0), 3, num_steps=3, histogram=hist)
    assert set(samples["num_atoms"].tolist()) <= {5, 9}
    assert np.isfinite(samples["positions"]).all()


# ----------------------------------------------------------------------------- command lines


@pytest.mark.slow
def test_sample_pretrained_writes_molecules(models_root, tmp_path):
    out = str(tmp_path / "samples")
    proc = run_cli(
        "sample", "--pretrained=tiny", f"--out={out}", *FAST, env={MODELS_ENV: models_root}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = load_samples_npz(os.path.join(out, "samples.npz"))
    assert samples["positions"].shape == (4, 29, 3)
    assert len(os.listdir(os.path.join(out, "xyz"))) == 4
    with open(os.path.join(out, "samples.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    from rdkit import Chem

    mols = list(Chem.SDMolSupplier(os.path.join(out, "samples.sdf"), sanitize=False))
    assert [m.GetNumAtoms() for m in mols] == samples["mask"].sum(-1).astype(int).tolist()
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["model"] == "pretrained:tiny" and summary["checkpoint_step"] == 5
    assert summary["num_steps"] == 4


@pytest.mark.slow
def test_evaluate_pretrained_writes_metrics(models_root, tmp_path):
    out = str(tmp_path / "eval")
    proc = run_cli(
        "evaluate",
        "--pretrained=tiny",
        f"--out={out}",
        "--num_runs=2",
        "--test_nll",
        "--max_test=8",
        *FAST,
        env={MODELS_ENV: models_root},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["eval/model"] == "pretrained:tiny" and metrics["eval/checkpoint_step"] == 5
    for name in ("atom_stability", "molecule_stability", "validity", "uniqueness"):
        assert 0.0 <= metrics[f"eval/{name}"] <= 1.0 and f"eval/{name}_std" in metrics
    assert metrics["eval/test_nll_num_molecules"] == 8 and np.isfinite(metrics["eval/test_nll"])


@pytest.mark.slow
def test_sample_official_checkpoint(tmp_path):
    pytest.importorskip("torch")
    out = str(tmp_path / "official")
    directory = os.path.join(OFFICIAL, "dit_dit_gaussian_dynamics")
    proc = run_cli(
        "sample", f"--official={directory}", "--gamma_composition=paper", f"--out={out}", *FAST
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = load_samples_npz(os.path.join(out, "samples.npz"))
    assert samples["positions"].shape == (4, 29, 3) and np.isfinite(samples["positions"]).all()


def test_unknown_pretrained_name_is_a_one_line_error(models_root, tmp_path):
    proc = run_cli(
        "sample",
        "--pretrained=nope",
        f"--out={tmp_path / 'x'}",
        *FAST,
        env={MODELS_ENV: models_root},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: No shipped model named 'nope'")
    assert "available: tiny" in proc.stderr
    assert not (tmp_path / "x").exists()
