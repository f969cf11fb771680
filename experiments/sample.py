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
A particle run (`configs/dw4.py`, `lj13.py`) writes `samples.npy` `[N, particles, d]` (data
units, CoM-free), `histograms.png` (energy and interatomic distances against the run's test
split) and `summary.json` (with `energy_w2`, `distance_tv`, ...) into
`<workdir>/samples_step<S>_<euler|sde><K>_seed<seed>_n<N>/`.
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

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A training workdir: a QM9 or particle (DW4, LJ13) run."
)
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

    from experiments.common.io import experiment_of

    if _WORKDIR.value and experiment_of(_WORKDIR.value) == "particles":
        _sample_particles(_WORKDIR.value)
        return
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


def _sample_particles(workdir: str) -> None:
    import jax
    import numpy as np

    from experiments.common.io import write_json
    from experiments.common.restore import load_run_or_exit
    from experiments.particles import evaluate as particle_evaluation

    if _SAMPLING.sampler.value is not None:
        raise SystemExit(
            "error: --sampler does not apply to particle runs (flow matching integrates with "
            "Euler steps, score models with Euler-Maruyama steps); use --num_steps."
        )
    run = load_run_or_exit(
        workdir,
        _SAMPLING.checkpoint.value,
        particle_evaluation.load_particle_run,
        writes=_OUT.value is None,
    )
    config = particle_evaluation.sampling_config(
        run.config, num_steps=_SAMPLING.num_steps.value, batch_size=_SAMPLING.batch_size.value
    )
    num_samples = _NUM_SAMPLES.value or config.evaluate.num_samples
    config.sample.batch_size = min(config.sample.batch_size, num_samples)
    seed = model_flags.or_default(_SAMPLING.seed.value, config.seed)
    solver = "euler" if config.generator == "flow" else "sde"
    tag = f"step{run.step}_{solver}{config.sample.num_steps}_seed{seed}_n{num_samples}"
    out = _OUT.value or os.path.join(workdir, f"samples_{tag}")
    try:
        reference, reference_name = particle_evaluation.reference_of(config)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    samples, scores = particle_evaluation.sample_and_score(
        config,
        run.graphdef,
        run.params,
        jax.random.key(seed),
        reference,
        num_samples=num_samples,
        nll_samples=0,
    )
    os.makedirs(out, exist_ok=True)
    paths = {"samples": os.path.join(out, "samples.npy")}
    np.save(paths["samples"], samples)
    if _PICTURE.value:
        paths["picture"] = os.path.join(out, "histograms.png")
        finite = np.isfinite(samples).all(axis=(1, 2))
        particle_evaluation.write_histograms(
            paths["picture"], samples[finite], reference, config.system
        )
    summary = {
        "workdir": os.path.abspath(run.workdir),
        "checkpoint": _SAMPLING.checkpoint.value,
        "checkpoint_step": run.step,
        "num_samples": num_samples,
        "num_steps": config.sample.num_steps,
        "seed": seed,
        "reference": reference_name,
        **scores,
    }
    paths["summary"] = os.path.join(out, "summary.json")
    write_json(paths["summary"], summary)
    print(f"\nsamples of {workdir} (step {run.step}) written to {out}")
    for name in sorted(paths):
        print(f"  {name:<8} {paths[name]}")
    print(
        f"against the {reference_name} split: energy_w2 {scores['energy_w2']:.4g}, "
        f"distance_tv {scores['distance_tv']:.4g}, high_energy_frac "
        f"{scores['high_energy_frac']:.4g} ({num_samples} samples, {config.sample.num_steps} "
        f"steps, seed {seed})"
    )


def cli() -> None:
    """The `symdiff-sample` console script."""
    from experiments.common import cli as common_cli

    common_cli.run(main)


if __name__ == "__main__":
    cli()
