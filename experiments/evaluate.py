r"""Evaluates a trained run as its paper does and merges the numbers into metrics.json.

    python -m experiments.evaluate --workdir workdirs/qm9_symdiff_small
    python -m experiments.evaluate --workdir W --num_samples 10000 --num_runs 3 --checkpoint best
    python -m experiments.evaluate --workdir W --notest_nll --nonovelty --num_steps 100
    python -m experiments.evaluate --pretrained qm9_symdiff_cpu --num_samples 10000 --num_runs 3
    python -m experiments.evaluate --official /path/to/official/run   # needs torch
    # a conformer run (configs/qm9_conformers_*.py, geom_qm9_*.py), with the ETKDG baseline
    python -m experiments.evaluate --workdir workdirs/qm9_conformers_flow_target_small \
        --num_molecules 200 --etkdg
    # a particle run (configs/dw4.py, lj13.py), scored on the published test split
    python -m experiments.evaluate --workdir workdirs/dw4 --num_samples 10000 --num_steps 200 \
        --reference /path/to/DEM/data

Conformer runs: for each of the first `--num_molecules` test molecules with L reference
conformers, 2L conformers are generated (`--per_reference`) and scored with COV-R/P and
AMR-R/P (mean and median over molecules, delta = 0.1 and 0.5 A) as `eval/<metric>`; with
`--etkdg`, RDKit ETKDGv3 (+ MMFF94 unless `--nommff`) on the same molecules as
`etkdg_mmff/<metric>` (or `etkdg/<metric>`).

Particle runs: `--num_samples` new samples (default `config.evaluate.num_samples`) drawn
with `--num_steps` (default `config.sample.num_steps`) and scored against the test split of
`--reference` (default `config.data.reference`; "" = our Metropolis test split) as
`eval/energy_w2`, `eval/distance_w2`, `eval/distance_tv`, `eval/high_energy_frac`, and for
the EGNN flow `eval/nll` on `--max_test` test samples (default `config.evaluate.nll_samples`;
`--notest_nll` skips it).

QM9 runs:
`num_runs` independent runs of `num_samples` molecules (keys `fold_in(key, run)`), each scored
for atom/molecule stability, validity, uniqueness and (with --novelty) novelty against the
training molecules' graphs; the mean and sample std over runs go into
`<workdir>/metrics.json` as `eval/<metric>` and `eval/<metric>_std` (each run's value as
`eval/run<i>/<metric>`), with `eval/test_nll`: the mean VLB NLL (nats, with log p(N)) of
the test split's molecules. Existing keys of metrics.json are kept. Unset flags take the
run's config (`config.evaluate.*`, `config.sample.*`, `config.seed`). `--pretrained NAME`
(a model shipped with the package) and `--official DIR` (an official SymDiff/EDM QM9
checkpoint, needs torch) write their metrics.json into `--out` (default `workdirs/<name>`).
"""

from __future__ import annotations

import time

from experiments.common import runtime

runtime.use_single_threaded_eigen()
runtime.keep_freed_memory()  # XLA's per-step scratch memory stays mapped

from absl import app, flags  # noqa: E402 (after the XLA flags)

from experiments.qm9 import model_flags  # noqa: E402

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A training workdir: a QM9, conformer or particle (DW4, LJ13) run."
)
_SAMPLING = model_flags.define_sampling_flags()
_OUT = flags.DEFINE_string(
    "out", None, "--pretrained/--official: directory of metrics.json (default workdirs/<name>)."
)
_NUM_SAMPLES = flags.DEFINE_integer(
    "num_samples", None, "Molecules per run (default: config.evaluate.num_samples).", lower_bound=1
)
_NUM_RUNS = flags.DEFINE_integer(
    "num_runs",
    None,
    "Independent sampling runs (default: config.evaluate.num_runs).",
    lower_bound=1,
)
_TEST_NLL = flags.DEFINE_boolean(
    "test_nll", None, "Compute the test NLL (default: config.evaluate.test_nll)."
)
_MAX_TEST = flags.DEFINE_integer(
    "max_test",
    None,
    "Test molecules for the NLL, 0 = all (default: config.evaluate.max_test).",
    lower_bound=0,
)
_NOVELTY = flags.DEFINE_boolean(
    "novelty", None, "Score novelty against the training split (default: config.evaluate.novelty)."
)
_PROGRESS = flags.DEFINE_boolean("progress", True, "Show progress bars.")
_REFERENCE = flags.DEFINE_string(
    "reference",
    None,
    "Particle runs: folder of the published splits whose test split scores the samples "
    '(default: config.data.reference; "" = our Metropolis test split).',
)
_NUM_MOLECULES = flags.DEFINE_integer(
    "num_molecules",
    None,
    "Conformer runs: test molecules scored (default: config.evaluate.num_molecules).",
    lower_bound=0,
)
_PER_REFERENCE = flags.DEFINE_integer(
    "per_reference",
    None,
    "Conformer runs: generated conformers per reference (default: config.evaluate.per_reference).",
    lower_bound=1,
)
_ETKDG = flags.DEFINE_boolean(
    "etkdg", False, "Conformer runs: also score RDKit ETKDGv3 on the same molecules."
)
_MMFF = flags.DEFINE_boolean("mmff", True, "Conformer runs: MMFF94-minimise the ETKDG conformers.")
_WORKERS = flags.DEFINE_integer(
    "num_workers", None, "Conformer runs: RMSD / ETKDG processes (0: serial).", lower_bound=0
)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from experiments.common.io import experiment_of, write_metrics
    from experiments.qm9 import evaluate as evaluation
    from experiments.qm9.sampling import generator_of

    runtime.quiet_library_logs()
    runtime.enable_compilation_cache()
    import jax

    workdir = _WORKDIR.value
    if workdir and experiment_of(workdir) == "conformers":
        _evaluate_conformers(workdir)
        return
    if workdir and experiment_of(workdir) == "particles":
        _evaluate_particles(workdir)
        return
    source = model_flags.resolve_source(_SAMPLING, workdir, out=_OUT.value)
    run, workdir = source.run, source.out_dir
    config, ev = run.config, run.config.evaluate
    num_samples = model_flags.or_default(_NUM_SAMPLES.value, ev.num_samples)
    num_runs = model_flags.or_default(_NUM_RUNS.value, ev.num_runs)
    num_steps, sampler, seed = model_flags.sampling_settings(_SAMPLING, config)
    novelty = model_flags.or_default(_NOVELTY.value, ev.novelty)
    with_nll = model_flags.or_default(_TEST_NLL.value, ev.test_nll)
    if with_nll and generator_of(config) != "diffusion":
        raise SystemExit(
            "error: a flow-matching run has no test NLL (the diffusion VLB); pass --notest_nll."
        )
    max_test = model_flags.or_default(_MAX_TEST.value, ev.max_test)

    start = time.time()
    k_samples, k_nll = jax.random.split(jax.random.key(seed))
    histogram = (
        evaluation.train_size_histogram(config) if source.histogram is None else source.histogram
    )
    metrics = {
        "eval/model": source.label,
        "eval/checkpoint": _SAMPLING.checkpoint.value,
        "eval/checkpoint_step": run.step,
        "eval/num_samples": num_samples,
        "eval/num_runs": num_runs,
        "eval/num_steps": num_steps,
        "eval/sampler": sampler,
        "eval/seed": seed,
        "eval/compute_dtype": config.model.get("compute_dtype", "float32"),
    }
    metrics.update(
        evaluation.evaluate_samples_runs(
            run,
            k_samples,
            num_samples=num_samples,
            num_runs=num_runs,
            num_steps=num_steps,
            sampler=sampler,
            batch_size=_SAMPLING.batch_size.value,
            histogram=histogram,
            train_smiles=evaluation.novelty_reference(config) if novelty else None,
            progress=_PROGRESS.value,
        )
    )
    if with_nll:
        nll, count = evaluation.test_nll(run, k_nll, histogram=histogram, max_test=max_test)
        metrics["eval/test_nll"] = nll
        metrics["eval/test_nll_num_molecules"] = count
    metrics["eval/time_s"] = time.time() - start
    path = write_metrics(workdir, metrics)

    print(
        f"\nevaluation of {source.label} (step {run.step}, {sampler}, {num_steps} steps): "
        f"{num_runs} run(s) x {num_samples} molecules"
        + (
            f"; test NLL over {metrics['eval/test_nll_num_molecules']} molecules"
            if with_nll
            else ""
        )
    )
    print(evaluation.format_table(metrics))
    print(f"merged into {path}")


def _evaluate_conformers(workdir: str) -> None:
    import jax

    from experiments.common.io import write_metrics
    from experiments.common.restore import load_run_or_exit
    from experiments.conformers import evaluate as conformer_evaluation
    from experiments.qm9.evaluate import format_table

    run = load_run_or_exit(
        workdir, _SAMPLING.checkpoint.value, conformer_evaluation.load_conformer_run
    )
    seed = model_flags.or_default(_SAMPLING.seed.value, run.config.seed)
    start = time.time()
    metrics = {"eval/checkpoint": _SAMPLING.checkpoint.value, "eval/checkpoint_step": run.step}
    metrics.update(
        conformer_evaluation.evaluate_conformer_run(
            run,
            jax.random.key(seed),
            num_molecules=_NUM_MOLECULES.value,
            per_reference=_PER_REFERENCE.value,
            num_steps=_SAMPLING.num_steps.value,
            num_workers=_WORKERS.value,
            progress=_PROGRESS.value,
        )
    )
    if _ETKDG.value:
        metrics.update(
            conformer_evaluation.evaluate_etkdg(
                run.config,
                num_molecules=_NUM_MOLECULES.value,
                per_reference=_PER_REFERENCE.value,
                mmff=_MMFF.value,
                seed=seed,
                num_workers=_WORKERS.value or 0,
                progress=_PROGRESS.value,
            )
        )
    metrics["eval/time_s"] = time.time() - start
    path = write_metrics(workdir, metrics)
    print(f"\nconformer evaluation of {workdir} (step {run.step}):")
    for prefix in ("eval/", "etkdg_mmff/", "etkdg/"):
        if any(k.startswith(prefix) for k in metrics):
            print(f"{prefix}\n" + format_table(metrics, prefix))
    print(f"merged into {path}")


def _evaluate_particles(workdir: str) -> None:
    import jax

    from experiments.common.io import write_metrics
    from experiments.common.restore import load_run_or_exit
    from experiments.particles import evaluate as particle_evaluation
    from experiments.qm9.evaluate import format_table

    run = load_run_or_exit(workdir, _SAMPLING.checkpoint.value, particle_evaluation.load_particle_run)
    seed = model_flags.or_default(_SAMPLING.seed.value, run.config.seed)
    with_nll = model_flags.or_default(_TEST_NLL.value, True)
    start = time.time()
    metrics = {
        "eval/checkpoint": _SAMPLING.checkpoint.value,
        "eval/checkpoint_step": run.step,
        "eval/seed": seed,
    }
    try:
        metrics.update(
            particle_evaluation.evaluate_particle_run(
                run,
                jax.random.key(seed),
                num_samples=_NUM_SAMPLES.value,
                num_steps=_SAMPLING.num_steps.value,
                batch_size=_SAMPLING.batch_size.value,
                reference_dir=_REFERENCE.value,
                nll_samples=_MAX_TEST.value if with_nll else 0,
            )
        )
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    metrics["eval/time_s"] = time.time() - start
    path = write_metrics(workdir, metrics)
    print(f"\nparticle evaluation of {workdir} (step {run.step}):")
    print(format_table(metrics))
    print(f"merged into {path}")


def cli() -> None:
    """The `symdiff-evaluate` console script."""
    from experiments.common import cli as common_cli

    common_cli.run(main)


if __name__ == "__main__":
    cli()
