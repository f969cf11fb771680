"""Sampling from and scoring a trained QM9 run: the logic of `experiments.sample` and
`experiments.evaluate`, importable into notebooks.

    run = load_run("workdirs/qm9_symdiff_small", checkpoint="best")
    hist = train_size_histogram(run.config)
    samples = draw_samples(run, jax.random.key(0), 100, histogram=hist)
    scores = evaluate_samples_runs(run, jax.random.key(1), num_samples=1000, num_runs=3,
                                   histogram=hist)
    nll, count = test_nll(run, jax.random.key(2), histogram=hist, max_test=1000)

The protocol is EDM's and SymDiff's (paper 002, section 4.1): molecule sizes are drawn from
the training split's size histogram, each of `num_runs` independent runs of `num_samples`
molecules is scored (atom/molecule stability, RDKit validity, uniqueness, novelty against the
training molecules' distance-derived graphs), and the mean and standard deviation over runs
are reported; the test NLL is the variational bound in nats including `log p(N)`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.common.restore import RestoredRun, config_argument, restore_run
from experiments.common.state import make_schedule
from experiments.common.validation import batch_outputs
from experiments.qm9.input_pipeline import dataset_of, fixed_batches, load_split
from experiments.qm9.model import abstract_state
from experiments.qm9.sampling import (
    check_sampler,
    generator_of,
    sample_metrics,
    sample_molecules_batched,
)
from symdiff_jax.data import num_atoms_log_prob, size_histogram
from symdiff_jax.diffusion.molecules import molecules_from_batch
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.losses.molecules import nll_terms
from symdiff_jax.metrics.records import shared_keys
from symdiff_jax.models.factory import compute_dtype as compute_dtype_of

PREFIX = "eval/"
# Sample metrics in the order tables list them.
SAMPLE_METRICS = ("atom_stability", "molecule_stability", "validity", "uniqueness", "novelty")


def make_nll_fn(config, schedule: Schedule, histogram: np.ndarray):
    """`(model, batch, key) -> {"nll": [B], ...}`: the VLB estimate with `log p(N)`."""

    spec = dataset_of(config).spec

    def nll_fn(model, batch, key):
        mol = molecules_from_batch(batch, spec)
        n = jnp.sum(mol.mask, -1).astype(jnp.int32)
        return nll_terms(
            model,
            key,
            mol,
            schedule,
            num_steps=config.diffusion.num_steps,
            spec=spec,
            log_prob_num_atoms=num_atoms_log_prob(histogram, n),
        )

    return nll_fn


def validation_nll(
    nll_step, params, batches: list[dict], key: jax.Array, name: str = "nll"
) -> float:
    """Mean VLB NLL (nats, with log p(N)) over fixed batches and fixed keys.

    `name` picks another per-example output of the step to average (e.g. "loss").
    """
    total, count = 0.0, 0
    for nll in batch_outputs(nll_step, params, batches, key, name):
        total, count = total + float(nll.sum()), count + nll.size
    return total / max(count, 1)


def _train_command(workdir: str, config) -> str:
    variant = config.get("variant", "<variant>") if config is not None else "<variant>"
    argument = config_argument(f"qm9_{variant}", config)
    return f"python -m experiments.train --config {argument} --workdir {workdir}"


def load_run(workdir: str, checkpoint: str | int = "latest") -> RestoredRun:
    """Restores the EMA parameters of a QM9 training workdir.

    Args:
      workdir: a directory written by `python -m experiments.train` with a QM9 config.
      checkpoint: `"latest"`, `"best"` (lowest `val/nll`) or a step number.

    Returns:
      The `RestoredRun` (config from `<workdir>/config.json`, the restored step).

    Raises:
      FileNotFoundError: (`WorkdirError` or `load_config_json`'s) the workdir, its
        config.json or its checkpoints are missing, or it is not a QM9 run; the message
        says how to train one.
      ValueError: a malformed `checkpoint`.
      symdiff_jax.train.CheckpointError: the checkpoint exists but cannot be restored
        (damaged files, unknown step, no best step, a config that no longer matches).
        Restoring only reads: nothing in the workdir is changed.
    """
    return restore_run(
        workdir,
        checkpoint,
        experiments=("qm9", "geom_drugs"),
        abstract_state=abstract_state,
        train_command=_train_command,
    )


def with_compute_dtype(run: RestoredRun, compute_dtype: str) -> RestoredRun:
    """The same run (same parameters) whose model computes its matmuls in `compute_dtype`.

    `model.compute_dtype` changes how the DiT multiplies, not its parameters (float32
    either way), so a float32 checkpoint samples in bf16 and back.

    Args:
      run: from `load_run`.
      compute_dtype: a `model.compute_dtype` ("float32" or "bfloat16").

    Returns:
      A `RestoredRun` with the new config and model structure, the same parameters.

    Raises:
      ValueError: an unknown dtype (the message lists the accepted ones).
    """
    config = ml_collections.ConfigDict(run.config.to_dict())
    config.model.compute_dtype = str(compute_dtype)
    compute_dtype_of(config.model)  # ValueError for an unknown name
    graphdef, _ = abstract_state(config)
    return run._replace(config=config, graphdef=graphdef)


def train_size_histogram(config) -> np.ndarray:
    """`[max_atoms + 1]` counts of molecule sizes in the run's training molecules.

    The training split exactly as the run saw it (`config.data.max_train` included), so
    samples follow the size distribution the model was trained on.
    """
    train = load_split(config, "train", config.data.max_train)
    return size_histogram(train["num_atoms"], config.data.max_atoms)


def draw_samples(
    run: RestoredRun,
    key: jax.Array,
    num_samples: int,
    *,
    num_steps: int | None = None,
    sampler: str | None = None,
    batch_size: int | None = None,
    histogram: np.ndarray | None = None,
    schedule=None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """`num_samples` molecules from the run's EMA model (sizes from `histogram`).

    Args:
      run: from `load_run`.
      key: PRNG key; the same key (and batch size) gives the same molecules.
      num_samples: molecules to draw (>= 1).
      num_steps, sampler, batch_size: default `config.sample.*`; the batch size is capped at
        `num_samples`.
      histogram: size counts; default `train_size_histogram(run.config)`.
      schedule: the noise schedule; default `make_schedule(run.config.diffusion)`.
      progress: show a progress bar.

    Returns:
      numpy `positions [S, N, 3]`, `atomic_numbers [S, N]`, `charges [S, N]`, `mask [S, N]`,
      `num_atoms [S]`.
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1; got {num_samples}.")
    config = run.config
    return sample_molecules_batched(
        run.graphdef,
        run.params,
        key,
        train_size_histogram(config) if histogram is None else histogram,
        int(num_samples),
        schedule=make_schedule(config.diffusion) if schedule is None else schedule,
        num_steps=int(num_steps or config.sample.num_steps),
        batch_size=min(int(batch_size or config.sample.batch_size), int(num_samples)),
        sampler=check_sampler(config, sampler or config.sample.sampler),
        max_atoms=config.data.max_atoms,
        bucket_sizes=tuple(config.data.bucket_sizes),
        progress=progress,
    )


def novelty_reference(config) -> frozenset[str]:
    """EDM's novelty reference: the SMILES of the whole training split's xyz-derived graphs.

    `symdiff_jax.data.load_qm9_graph_smiles("train")` (cached after the first call, which
    takes about a minute), as a set for `sample_metrics(..., train_smiles=...)`.
    """
    from symdiff_jax.data.qm9 import load_qm9_graph_smiles

    smiles = load_qm9_graph_smiles(
        "train", source=config.data.source or None, cache_dir=config.data.cache_dir or None
    )
    return frozenset(str(s) for s in smiles if s)


def summarise_runs(
    per_run: Sequence[Mapping[str, float]], prefix: str = PREFIX
) -> dict[str, float]:
    """Mean and spread of each metric over independent runs, as flat keys.

    Args:
      per_run: one `{metric: value}` dict per run (the same keys in each).
      prefix: prepended to every key.

    Returns:
      `{prefix + m: mean}` and, with two or more runs, `{prefix + m + "_std": std}` (the
      sample standard deviation, `ddof=1`), plus `{prefix + "run<i>/" + m: value}` for every
      run. With a single run there is no spread to report and no `_std` key.

    Raises:
      ValueError: no runs, or runs with different metric names.
    """
    names = shared_keys(per_run, "run")
    out: dict[str, float] = {}
    for name in names:
        values = np.array([float(run[name]) for run in per_run], dtype=np.float64)
        out[prefix + name] = float(values.mean())
        if len(values) > 1:
            out[prefix + name + "_std"] = float(values.std(ddof=1))
    for i, run in enumerate(per_run):
        out.update({f"{prefix}run{i}/{name}": float(run[name]) for name in names})
    return out


def evaluate_samples_runs(
    run: RestoredRun,
    key: jax.Array,
    *,
    num_samples: int,
    num_runs: int,
    num_steps: int | None = None,
    sampler: str | None = None,
    batch_size: int | None = None,
    histogram: np.ndarray | None = None,
    train_smiles: frozenset[str] | Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Scores `num_runs` independent sampling runs and summarises them (`summarise_runs`).

    Run `i` draws `num_samples` molecules with `jax.random.fold_in(key, i)` and is scored by
    `sample_metrics` (stability, validity, uniqueness; novelty when `train_smiles`, e.g.
    `novelty_reference(run.config)`, is given).

    Returns:
      Flat `eval/<metric>`, `eval/<metric>_std` (two or more runs) and
      `eval/run<i>/<metric>` floats, plus `eval/sample_time_s` (seconds spent sampling).
    """
    if int(num_runs) < 1:
        raise ValueError(f"num_runs must be at least 1; got {num_runs}.")
    histogram = train_size_histogram(run.config) if histogram is None else histogram
    schedule = make_schedule(run.config.diffusion)
    per_run, seconds = [], 0.0
    for i in range(int(num_runs)):
        start = time.time()
        samples = draw_samples(
            run,
            jax.random.fold_in(key, i),
            num_samples,
            num_steps=num_steps,
            sampler=sampler,
            batch_size=batch_size,
            histogram=histogram,
            schedule=schedule,
            progress=progress,
        )
        seconds += time.time() - start
        per_run.append(sample_metrics(samples, train_smiles))
    out = summarise_runs(per_run)
    out[PREFIX + "sample_time_s"] = seconds
    return out


def test_nll(
    run: RestoredRun,
    key: jax.Array,
    *,
    histogram: np.ndarray | None = None,
    max_test: int = 0,
    batch_size: int | None = None,
) -> tuple[float, int]:
    """Mean negative log-likelihood bound on the test split, in nats per molecule.

    The VLB estimate of `make_nll_fn` (EDM's NLL, including `-log p(N)` under the
    training size histogram) with the run's EMA parameters, one fixed key per batch. Every
    test molecule counts exactly once: full batches go through `fixed_batches` and
    `validation_nll`; the remaining molecules are padded to one more batch (of repeats)
    whose extra rows are ignored, so the compiled step is reused.

    Args:
      run: from `load_run`.
      key: PRNG key of the estimate (fixed key -> reproducible number).
      histogram: size counts for `log p(N)`; default `train_size_histogram(run.config)`.
      max_test: use the first `max_test` molecules of a fixed shuffle of the test split
        (`load_split`); 0 = all of it.
      batch_size: default `config.batch_size`, capped at the number of molecules.

    Returns:
      `(mean NLL in nats, number of test molecules used)`.
    """
    from symdiff_jax.train.step import make_eval_step

    config = run.config
    if generator_of(config) != "diffusion":
        raise ValueError(
            "The test NLL is the diffusion VLB; a flow-matching run has none "
            "(pass --notest_nll or set config.evaluate.test_nll=False)."
        )
    histogram = train_size_histogram(config) if histogram is None else histogram
    data = load_split(config, "test", int(max_test))
    count = len(data["num_atoms"])
    if count == 0:
        raise ValueError("The test split is empty; check config.data.source.")
    size = min(int(batch_size or config.batch_size), count)
    nll_step = make_eval_step(
        run.graphdef, make_nll_fn(config, make_schedule(config.diffusion), histogram)
    )
    full = fixed_batches(data, size)
    covered = len(full) * size
    total = validation_nll(nll_step, run.params, full, key) * covered
    rest = count - covered
    if rest:
        rows = np.resize(np.arange(covered, count), size)  # the tail, repeated to a full batch
        tail = {k: v[rows] for k, v in data.items() if np.shape(v)[:1] == (count,)}
        (batch,) = fixed_batches(tail, size)
        nll = nll_step(run.params, batch, jax.random.fold_in(key, len(full)))["nll"]
        total += float(np.asarray(jax.device_get(nll))[:rest].sum())
    return total / count, count


test_nll.__test__ = False  # not a pytest test, whatever imports it


def format_table(metrics: Mapping[str, Any], prefix: str = PREFIX) -> str:
    """The `eval/` metrics as a `metric  mean  std` table (one line per metric)."""
    names = [m for m in SAMPLE_METRICS if prefix + m in metrics]
    names += sorted(
        k[len(prefix) :]
        for k in metrics
        if k.startswith(prefix)
        and "/" not in k[len(prefix) :]
        and not k.endswith(("_std", "_s"))
        and k[len(prefix) :] not in names
        and isinstance(metrics[k], float)
    )
    width = max([len("metric")] + [len(n) for n in names])
    lines = [f"  {'metric':<{width}}  {'mean':>12}  {'std':>10}"]
    for name in names:
        std = metrics.get(prefix + name + "_std")
        std_text = f"{std:>10.4g}" if isinstance(std, float) else f"{'-':>10}"
        lines.append(f"  {name:<{width}}  {metrics[prefix + name]:>12.6g}  {std_text}")
    return "\n".join(lines)
