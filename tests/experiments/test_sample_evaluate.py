"""End to end: `experiments.sample` and `experiments.evaluate` on a smoke QM9 run, and their
errors; the shared logic of `experiments.qm9.evaluate` in process."""

import json
import os
import re
import shutil
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs
from experiments.common.io import checkpoint_dir, write_config, write_metrics
from experiments.common.restore import RestoredRun, WorkdirError
from experiments.common.state import make_schedule
from experiments.qm9 import evaluate as evaluation
from experiments.qm9 import input_pipeline, model, sampling
from experiments.qm9 import train as qm9
from symdiff_jax.data import sampling_batches
from symdiff_jax.data.writers import load_samples_npz
from symdiff_jax.train import Checkpointer, CheckpointError
from tests.cli_helpers import run_cli


def qm9_config(variant: str, size: str | None = None):
    return configs.get_config(f"qm9_{variant}", size)


FAST = ("--num_samples=6", "--num_steps=5", "--noprogress")
METRICS = ("atom_stability", "molecule_stability", "validity", "uniqueness")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
    """`configs/qm9_symdiff.py:smoke` trained for its 4 steps (checkpoints at 2 and 4)."""
    workdir = str(tmp_path_factory.mktemp("qm9_smoke"))
    config = qm9_config("symdiff", "smoke")
    config.evaluate.write_files = False
    write_config(workdir, config)
    write_metrics(workdir, qm9.run(config, workdir))
    return workdir


@pytest.fixture(scope="module")
def restored(trained) -> RestoredRun:
    return evaluation.load_run(trained)


# ----------------------------------------------------------------------------- sample


@pytest.mark.allow_nonfinite  # sample_num_atoms gives unseen sizes log-probability -inf
def test_sample_cli_writes_readable_files(trained, restored):
    proc = run_cli("sample", f"--workdir={trained}", "--seed=3", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = os.path.join(trained, "samples_step4_ancestral5_seed3_n6")
    assert out in proc.stdout and "stability: atoms" in proc.stdout

    samples = load_samples_npz(os.path.join(out, "samples.npz"))
    assert samples["positions"].shape == (6, 29, 3)
    assert samples["atomic_numbers"].shape == samples["mask"].shape == (6, 29)
    num_atoms = samples["mask"].sum(-1)
    train = input_pipeline.load_split(restored.config, "train", restored.config.data.max_train)
    hist = np.bincount(train["num_atoms"], minlength=30)
    assert np.all(hist[num_atoms] > 0), f"sizes {num_atoms} never occur in the train split"

    from rdkit import Chem

    mols = list(Chem.SDMolSupplier(os.path.join(out, "samples.sdf"), sanitize=False))
    assert len(mols) == 6 and all(m is not None for m in mols)
    assert [m.GetNumAtoms() for m in mols] == num_atoms.tolist()
    assert len(os.listdir(os.path.join(out, "xyz"))) == 6
    with open(os.path.join(out, "samples.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["checkpoint_step"] == 4 and summary["seed"] == 3

    # Same seed, same molecules (here in another process); another seed, others.
    again = evaluation.draw_samples(restored, jax.random.key(3), 6, num_steps=5)
    np.testing.assert_array_equal(again["positions"], samples["positions"])
    np.testing.assert_array_equal(again["atomic_numbers"], samples["atomic_numbers"])
    other = evaluation.draw_samples(restored, jax.random.key(4), 6, num_steps=5)
    assert not np.array_equal(other["positions"], samples["positions"])


def test_sample_sizes_follow_the_training_histogram(restored):
    """Sizes come from the run's own train split (64 molecules in smoke), not all of QM9."""
    hist = evaluation.train_size_histogram(restored.config)
    assert hist.sum() == restored.config.data.max_train == 64
    only = np.zeros_like(hist)
    only[7] = 1  # a histogram with one size: every sample must have it
    samples = evaluation.draw_samples(restored, jax.random.key(0), 6, num_steps=5, histogram=only)
    np.testing.assert_array_equal(samples["num_atoms"], 7)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_cli_merges_mean_and_std(trained):
    path = os.path.join(trained, "metrics.json")
    with open(path) as f:
        before = json.load(f)
    assert "val/nll" in before and "train/loss" in before
    proc = run_cli(
        "evaluate",
        f"--workdir={trained}",
        "--num_runs=2",
        "--max_test=16",
        "--novelty",
        "--test_nll",
        "--compute_dtype=bfloat16",  # a float32 run evaluated with bf16 matmuls
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(path) as f:
        after = json.load(f)
    for k, v in before.items():  # training keys survive unchanged
        assert after[k] == v, k
    for name in (*METRICS, "novelty"):
        runs = [after[f"eval/run{i}/{name}"] for i in range(2)]
        assert after[f"eval/{name}"] == pytest.approx(statistics.fmean(runs), abs=1e-12)
        assert after[f"eval/{name}_std"] == pytest.approx(statistics.stdev(runs), abs=1e-12)
        assert 0.0 <= after[f"eval/{name}"] <= 1.0
        assert name in proc.stdout
    assert "eval/run2/validity" not in after
    assert after["eval/test_nll_num_molecules"] == 16
    assert np.isfinite(after["eval/test_nll"]) and after["eval/test_nll"] > 0
    assert after["eval/checkpoint_step"] == 4 and after["eval/num_samples"] == 6
    assert after["eval/compute_dtype"] == "bfloat16"
    assert "test_nll" in proc.stdout and path in proc.stdout


def test_runs_use_distinct_keys(restored, monkeypatch):
    """Run i samples with fold_in(key, i): two runs differ, and run 1 is reproducible."""
    monkeypatch.setattr(
        evaluation,
        "sample_metrics",
        lambda s, train_smiles=None: {"x": float(s["positions"].sum())},
    )
    key = jax.random.key(11)
    out = evaluation.evaluate_samples_runs(restored, key, num_samples=6, num_runs=2, num_steps=5)
    run1 = evaluation.draw_samples(restored, jax.random.fold_in(key, 1), 6, num_steps=5)
    assert out["eval/run1/x"] == pytest.approx(float(run1["positions"].sum()), rel=1e-6)
    assert out["eval/run0/x"] != out["eval/run1/x"]
    assert out["eval/x_std"] > 0


def test_summarise_runs_against_statistics():
    runs = [{"a": 0.25, "b": 1.0}, {"a": 0.5, "b": 1.0}, {"a": 1.0, "b": 1.0}]
    out = evaluation.summarise_runs(runs)
    assert out["eval/a"] == pytest.approx(statistics.fmean([0.25, 0.5, 1.0]))
    assert out["eval/a_std"] == pytest.approx(statistics.stdev([0.25, 0.5, 1.0]))
    assert out["eval/b_std"] == 0.0 and out["eval/run2/a"] == 1.0
    single = evaluation.summarise_runs(runs[:1])
    assert "eval/a_std" not in single and single["eval/a"] == 0.25
    with pytest.raises(ValueError, match="same metrics"):
        evaluation.summarise_runs([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError, match="at least one"):
        evaluation.summarise_runs([])


def test_test_nll_counts_every_molecule_once(restored, monkeypatch):
    """With NLL := atom count, the mean is the test subset's mean size, tail batch included."""

    def fake_make_nll_fn(config, schedule, histogram):
        return lambda model, batch, key: {"nll": jnp.sum(batch["mask"], -1)}

    monkeypatch.setattr(evaluation, "make_nll_fn", fake_make_nll_fn)
    hist = evaluation.train_size_histogram(restored.config)
    nll, count = evaluation.test_nll(
        restored, jax.random.key(0), histogram=hist, max_test=11, batch_size=4
    )
    sizes = input_pipeline.load_split(restored.config, "test", 11)["num_atoms"]
    assert count == 11
    assert nll == pytest.approx(float(np.mean(sizes)), rel=1e-6)


def test_test_nll_is_deterministic_and_finite(restored):
    hist = evaluation.train_size_histogram(restored.config)
    a = evaluation.test_nll(restored, jax.random.key(5), histogram=hist, max_test=16)
    b = evaluation.test_nll(restored, jax.random.key(5), histogram=hist, max_test=16)
    assert a == b and a[1] == 16 and np.isfinite(a[0])


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_choice_and_ema(trained, restored):
    """`latest` is step 4, a step number is honoured, `best` is the one with val/nll, and the
    parameters are the EMA ones."""
    assert restored.step == 4
    step2 = evaluation.load_run(trained, "2")
    assert step2.step == 2
    assert evaluation.load_run(trained, "best").step == 4  # only step 4 has val/nll
    _, target = model.abstract_state(restored.config)
    with Checkpointer(checkpoint_dir(trained)) as ckpt:
        state = ckpt.restore(target)
    same = jax.tree.map(np.array_equal, restored.params, state.ema_params)
    assert all(jax.tree.leaves(same))
    differ = jax.tree.map(np.array_equal, restored.params, state.params)
    assert not all(jax.tree.leaves(differ)), "restored the raw, not the EMA, parameters"
    differ = jax.tree.map(np.array_equal, restored.params, step2.params)
    assert not all(jax.tree.leaves(differ))
    with pytest.raises(CheckpointError, match="available steps"):
        evaluation.load_run(trained, "3")
    with pytest.raises(ValueError, match="'latest', 'best' or a step"):
        evaluation.load_run(trained, "newest")


# ----------------------------------------------------------------------------- errors


def test_missing_workdir(tmp_path):
    workdir = tmp_path / "nothing_here"
    proc = run_cli("sample", f"--workdir={workdir}", *FAST)
    assert proc.returncode != 0
    assert "does not exist" in proc.stderr and "experiments.train" in proc.stderr
    assert not workdir.exists(), "a failed command must not create the workdir"


def test_workdir_without_config(tmp_path):
    proc = run_cli("evaluate", f"--workdir={tmp_path}", *FAST)
    assert proc.returncode != 0
    assert "config.json" in proc.stderr and "experiments.train" in proc.stderr
    assert set(os.listdir(tmp_path)) - {"run.lock"} == set()  # only the advisory lock file


def test_workdir_without_checkpoints(trained, tmp_path):
    shutil.copy(os.path.join(trained, "config.json"), tmp_path)
    with pytest.raises(WorkdirError, match="No checkpoints.*qm9_symdiff.py"):
        evaluation.load_run(str(tmp_path))


def test_workdir_of_another_experiment(tmp_path):
    write_config(str(tmp_path), qm9_config("symdiff", "smoke"))
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    config["experiment"] = "toy_2d"
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    with pytest.raises(WorkdirError, match="'toy_2d' run.*qm9 and geom_drugs runs only"):
        evaluation.load_run(str(tmp_path))


def _copy_run(trained: str, dest: str) -> str:
    return shutil.copytree(trained, dest, ignore=shutil.ignore_patterns("samples_*"))


@pytest.mark.parametrize("cli", ["sample", "evaluate"])
def test_corrupt_checkpoint_fails_and_writes_nothing(trained, tmp_path, cli):
    """Damaged array data of step 4: asking for step 4 fails and writes nothing; the
    latest falls back to step 2 with a warning naming step 4."""
    workdir = _copy_run(trained, str(tmp_path / "run"))
    step_dir = os.path.join(workdir, "checkpoints", "4")
    data_dir = os.path.join(step_dir, "default", "ocdbt.process_0", "d")
    for name in os.listdir(data_dir):  # the array data of the latest step
        with open(os.path.join(data_dir, name), "wb") as f:
            f.write(b"garbage" * 40)
    with open(os.path.join(workdir, "metrics.json"), "rb") as f:
        metrics_bytes = f.read()
    listing = sorted(set(os.listdir(workdir)) - {"run.lock"})

    extra = ("--num_runs=1", "--notest_nll") if cli == "evaluate" else ()
    proc = run_cli(cli, f"--workdir={workdir}", "--checkpoint=4", *extra, *FAST)
    assert proc.returncode != 0
    assert step_dir in proc.stderr and "damaged" in proc.stderr, proc.stderr[-2000:]
    assert "--checkpoint" in proc.stderr
    with open(os.path.join(workdir, "metrics.json"), "rb") as f:
        assert f.read() == metrics_bytes
    assert sorted(set(os.listdir(workdir)) - {"run.lock"}) == listing

    proc = run_cli(cli, f"--workdir={workdir}", *extra, *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert step_dir in proc.stderr and "Falling back" in proc.stderr, proc.stderr[-2000:]
    assert "step 2" in proc.stdout


def test_corrupt_metadata_names_the_step(trained, tmp_path, caplog):
    """A damaged newest step: the latest falls back to step 2 with a warning naming step 4;
    asking for step 4 itself raises."""
    workdir = _copy_run(trained, str(tmp_path / "run"))
    with open(os.path.join(workdir, "checkpoints", "4", "default", "_METADATA"), "w") as f:
        f.write("{not json")
    with caplog.at_level("WARNING"):
        assert evaluation.load_run(workdir).step == 2
    assert re.search(r"checkpoints/4 \(step 4\) is damaged", caplog.text), caplog.text
    with pytest.raises(CheckpointError, match=r"checkpoints/4 \(step 4\) is damaged"):
        evaluation.load_run(workdir, "4")


def test_bucketed_sampling_keeps_the_sizes_and_bounds_the_compilations(restored):
    """Bucketing changes only the padding of a batch: the drawn sizes (and their order)
    stay those of the unbucketed sampler; each (rows, width) shape compiles once."""
    key, hist = jax.random.key(5), evaluation.train_size_histogram(restored.config)
    kw = dict(
        schedule=make_schedule(restored.config.diffusion), num_steps=3, batch_size=4, max_atoms=29
    )
    fn = sampling.compiled_sampler(
        restored.graphdef,
        kw["schedule"],
        3,
        "ancestral",
        input_pipeline.dataset_of(restored.config).spec,
    )
    before = fn._cache_size()
    plain = sampling.sample_molecules_batched(
        restored.graphdef, restored.params, key, hist, 10, **kw
    )
    after_plain = fn._cache_size()
    buckets = (12, 18, 29)

    def bucketed_run():
        return sampling.sample_molecules_batched(
            restored.graphdef, restored.params, key, hist, 10, bucket_sizes=buckets, **kw
        )

    bucketed = bucketed_run()
    np.testing.assert_array_equal(bucketed["num_atoms"], plain["num_atoms"])
    for out in (plain, bucketed):
        assert out["positions"].shape == (10, 29, 3)
        real = out["mask"] > 0
        np.testing.assert_array_equal(real, np.arange(29) < out["num_atoms"][:, None])
        assert np.all(np.isfinite(out["positions"]))
        assert np.all(out["positions"][~real] == 0) and np.all(out["atomic_numbers"][~real] == 0)
        assert np.all(out["atomic_numbers"][real] > 0)
    plan = sampling_batches(plain["num_atoms"], 4, bucket_sizes=buckets, max_atoms=29)
    shapes = {(len(rows), width) for rows, width in plan}
    assert len({w for _, w in shapes}) >= 2, plan
    compiled = fn._cache_size()
    # The bucketed run compiled exactly its planned shapes (not the plain (4, 29) again).
    assert after_plain - before <= 1
    assert compiled - after_plain == len(shapes - {(4, 29)})
    bucketed_run()
    assert fn._cache_size() == compiled


def test_a_float32_run_samples_with_bf16_matmuls(restored):
    """`with_compute_dtype` keeps the parameters and changes only how the DiT multiplies."""
    from flax import nnx

    run16 = evaluation.with_compute_dtype(restored, "bfloat16")
    assert run16.params is restored.params and run16.step == restored.step
    assert restored.config.model.compute_dtype == "float32"  # the original is untouched
    model16 = nnx.merge(run16.graphdef, run16.params)
    model32 = nnx.merge(restored.graphdef, restored.params)
    assert model16.eps_net.backbone.blocks[0].attn.qkv.dtype == jnp.bfloat16
    assert model16.gamma_net.backbone.blocks[0].mlp.fc1.dtype == jnp.bfloat16
    assert model32.eps_net.backbone.blocks[0].attn.qkv.dtype is None

    kw = dict(num_steps=3, histogram=evaluation.train_size_histogram(restored.config))
    a = evaluation.draw_samples(restored, jax.random.key(9), 5, **kw)
    b = evaluation.draw_samples(run16, jax.random.key(9), 5, **kw)
    np.testing.assert_array_equal(a["mask"], b["mask"])  # same sizes, same noise
    np.testing.assert_allclose(b["positions"], a["positions"], atol=5e-2)
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        evaluation.with_compute_dtype(restored, "float16")
