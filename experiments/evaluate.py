r"""Evaluates a trained QM9 run as the paper does and merges the numbers into metrics.json.

    python -m experiments.evaluate --workdir workdirs/qm9_symdiff_small
    python -m experiments.evaluate --workdir W --num_samples 10000 --num_runs 3 --checkpoint best
    python -m experiments.evaluate --workdir W --notest_nll --nonovelty --num_steps 100

`num_runs` independent runs of `num_samples` molecules (keys `fold_in(key, run)`), each scored
for atom/molecule stability, validity, uniqueness and (with --novelty) novelty against the
training molecules' graphs; the mean and sample std over runs go into
`<workdir>/metrics.json` as `eval/<metric>` and `eval/<metric>_std` (each run's value as
`eval/run<i>/<metric>`), with `eval/test_nll`: the mean VLB NLL (nats, with log p(N)) of
the test split's molecules. Existing keys of metrics.json are kept. Unset flags take the
run's config (`config.evaluate.*`, `config.sample.*`, `config.seed`).
"""

from __future__ import annotations

import time

from symdiff_jax.experiments import runtime

runtime.use_single_threaded_eigen()

from absl import app, flags  # noqa: E402 (after the XLA flags)

_WORKDIR = flags.DEFINE_string("workdir", None, "A QM9 training workdir.", required=True)
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
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "latest", "'latest', 'best' (lowest val/nll) or a step number."
)
_NUM_STEPS = flags.DEFINE_integer(
    "num_steps", None, "Sampling steps (default: config.sample.num_steps).", lower_bound=1
)
_SAMPLER = flags.DEFINE_enum(
    "sampler", None, ["ancestral", "ddim"], "Sampler (default: config.sample.sampler)."
)
_SEED = flags.DEFINE_integer("seed", None, "PRNG seed (default: config.seed).")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size",
    None,
    "Molecules per compiled sampling batch (default: config.sample.batch_size).",
    lower_bound=1,
)
_PROGRESS = flags.DEFINE_boolean("progress", True, "Show progress bars.")


def _pick(flag_value, default):
    return default if flag_value is None else flag_value


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from symdiff_jax.experiments import evaluation
    from symdiff_jax.experiments.io import write_metrics

    runtime.quiet_library_logs()
    runtime.enable_compilation_cache()
    import jax

    workdir = _WORKDIR.value
    run = evaluation.load_run_or_exit(workdir, _CHECKPOINT.value)
    config, ev = run.config, run.config.evaluate
    num_samples = _pick(_NUM_SAMPLES.value, ev.num_samples)
    num_runs = _pick(_NUM_RUNS.value, ev.num_runs)
    num_steps = _pick(_NUM_STEPS.value, config.sample.num_steps)
    sampler = _pick(_SAMPLER.value, config.sample.sampler)
    seed = _pick(_SEED.value, config.seed)
    novelty = _pick(_NOVELTY.value, ev.novelty)
    with_nll = _pick(_TEST_NLL.value, ev.test_nll)
    max_test = _pick(_MAX_TEST.value, ev.max_test)

    start = time.time()
    k_samples, k_nll = jax.random.split(jax.random.key(seed))
    histogram = evaluation.train_size_histogram(config)
    metrics = {
        "eval/checkpoint": _CHECKPOINT.value,
        "eval/checkpoint_step": run.step,
        "eval/num_samples": num_samples,
        "eval/num_runs": num_runs,
        "eval/num_steps": num_steps,
        "eval/sampler": sampler,
        "eval/seed": seed,
    }
    metrics.update(
        evaluation.evaluate_samples_runs(
            run,
            k_samples,
            num_samples=num_samples,
            num_runs=num_runs,
            num_steps=num_steps,
            sampler=sampler,
            batch_size=_BATCH_SIZE.value,
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
        f"\nevaluation of {workdir} (step {run.step}, {sampler}, {num_steps} steps): "
        f"{num_runs} run(s) x {num_samples} molecules"
        + (
            f"; test NLL over {metrics['eval/test_nll_num_molecules']} molecules"
            if with_nll
            else ""
        )
    )
    print(evaluation.format_table(metrics))
    print(f"merged into {path}")


if __name__ == "__main__":
    app.run(main)
