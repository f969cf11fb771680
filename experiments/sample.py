r"""Draws molecules from a trained QM9 run and writes them as files.

    python -m experiments.sample --workdir workdirs/qm9_symdiff_small
    python -m experiments.sample --workdir W --num_samples 100 --sampler ddim --num_steps 50
    python -m experiments.sample --workdir W --checkpoint best --seed 3 --out /tmp/mols
    python -m experiments.sample --pretrained qm9_symdiff_cpu --num_samples 100
    python -m experiments.sample --official /path/to/official/run --num_samples 100

Restores the EMA parameters of the latest (or best, or a given) checkpoint, draws molecules
with sizes from the run's training-size histogram, and writes `samples.npz`,
`samples.sdf`, `xyz/` and `samples.png` (plus `summary.json`) into
`<workdir>/samples_step<S>_<sampler><K>_seed<seed>_n<N>/` or `--out`. Unset flags take the
run's config (`config.evaluate.num_samples`, `config.sample.*`, `config.seed`).
`--pretrained NAME` samples a model shipped with the package, `--official DIR` an official
SymDiff/EDM QM9 checkpoint (needs torch; its T, schedule and normalisation); their outputs
go to `workdirs/<name>/samples_<tag>/` unless `--out` says otherwise.
"""

from __future__ import annotations

import os

from experiments.common import runtime

runtime.use_single_threaded_eigen()
runtime.keep_freed_memory()  # XLA's per-step scratch memory stays mapped

from absl import app, flags  # noqa: E402 (after the XLA flags)

from experiments.qm9 import model_flags  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A QM9 training workdir.")
_SAMPLING = model_flags.define_sampling_flags()
_NUM_SAMPLES = flags.DEFINE_integer(
    "num_samples", None, "Molecules to draw (default: config.evaluate.num_samples).", lower_bound=1
)
_OUT = flags.DEFINE_string("out", None, "Output directory (default: <workdir>/samples_<tag>).")
_PICTURE = flags.DEFINE_boolean("picture", True, "Also draw samples.png.")
_PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from experiments.common.io import write_json
    from experiments.common.memory import exit_unless_fits
    from experiments.qm9 import evaluate as evaluation
    from experiments.qm9.sampling import save_samples

    runtime.quiet_library_logs()
    runtime.enable_compilation_cache()
    import jax

    source = model_flags.resolve_source(_SAMPLING, _WORKDIR.value, writes=_OUT.value is None)
    run, workdir = source.run, source.out_dir
    config = run.config
    num_samples = _NUM_SAMPLES.value or config.evaluate.num_samples
    num_steps, sampler, seed = model_flags.sampling_settings(_SAMPLING, config)
    batch_size = min(_SAMPLING.batch_size.value or config.sample.batch_size, num_samples)
    exit_unless_fits(num_samples, config.data.max_atoms)
    tag = f"step{run.step}_{sampler}{num_steps}_seed{seed}_n{num_samples}"
    out = _OUT.value or os.path.join(workdir, f"samples_{tag}")

    samples = evaluation.draw_samples(
        run,
        jax.random.key(seed),
        num_samples,
        num_steps=num_steps,
        sampler=sampler,
        batch_size=batch_size,
        histogram=source.histogram,
        progress=_PROGRESS.value,
    )
    from symdiff_jax.metrics import stability

    paths = save_samples(out, samples, picture=_PICTURE.value)
    scores = stability(samples["positions"], samples["atomic_numbers"], samples["mask"])
    summary = {
        "workdir": os.path.abspath(run.workdir),
        "model": source.label,
        "checkpoint": _SAMPLING.checkpoint.value,
        "checkpoint_step": run.step,
        "num_samples": num_samples,
        "num_steps": num_steps,
        "sampler": sampler,
        "seed": seed,
        "batch_size": batch_size,
        "compute_dtype": config.model.get("compute_dtype", "float32"),
        **{k: float(v) for k, v in scores.items()},
    }
    paths["summary"] = os.path.join(out, "summary.json")
    write_json(paths["summary"], summary)

    print(f"\nsamples of {source.label} (step {run.step}) written to {out}")
    for name in sorted(paths):
        print(f"  {name:<8} {paths[name]}")
    print(
        f"stability: atoms {scores['atom_stability']:.4f}, molecules "
        f"{scores['molecule_stability']:.4f} ({num_samples} molecules, {sampler}, "
        f"{num_steps} steps, seed {seed})"
    )


def cli() -> None:
    """The `symdiff-sample` console script."""
    from experiments.common import cli as common_cli

    common_cli.run(main)


if __name__ == "__main__":
    cli()
