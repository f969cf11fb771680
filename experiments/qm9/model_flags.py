"""The flags shared by the QM9 command lines `sample` and `evaluate`: which model, how to sample."""

from __future__ import annotations

from typing import Any, NamedTuple

from absl import flags


class SamplingFlags(NamedTuple):
    """The holders of the shared flags (read each with `.value` after parsing)."""

    pretrained: flags.FlagHolder
    official: flags.FlagHolder
    gamma_composition: flags.FlagHolder
    checkpoint: flags.FlagHolder
    num_steps: flags.FlagHolder
    sampler: flags.FlagHolder
    seed: flags.FlagHolder
    batch_size: flags.FlagHolder
    compute_dtype: flags.FlagHolder


def define_sampling_flags() -> SamplingFlags:
    """Defines the model flags (`--pretrained`, `--official`, `--gamma_composition`,
    `--checkpoint`) and the sampling flags (`--num_steps`, `--sampler`, `--seed`,
    `--batch_size`, `--compute_dtype`); returns their holders.

    `resolve_source` turns the model flags (with `--workdir`) into a model and
    `sampling_settings` the sampling flags into values.
    """
    return SamplingFlags(
        pretrained=flags.DEFINE_string(
            "pretrained", None, "A model shipped with the package (e.g. qm9_symdiff_cpu)."
        ),
        official=flags.DEFINE_string("official", None, "An official SymDiff/EDM run directory."),
        gamma_composition=flags.DEFINE_enum(
            "gamma_composition",
            "official",
            ["official", "paper"],
            "--official SymDiff runs: the learned gamma as the official sampler composes it, or "
            "as paper 002 eq. 7 does.",
        ),
        checkpoint=flags.DEFINE_string(
            "checkpoint", "latest", "'latest', 'best' (lowest val/nll) or a step number."
        ),
        num_steps=flags.DEFINE_integer(
            "num_steps", None, "Sampling steps (default: config.sample.num_steps).", lower_bound=1
        ),
        sampler=flags.DEFINE_enum(
            "sampler",
            None,
            ["ancestral", "ddim", "euler"],
            "Sampler (default: config.sample.sampler; euler for flow-matching runs).",
        ),
        seed=flags.DEFINE_integer("seed", None, "PRNG seed (default: config.seed)."),
        batch_size=flags.DEFINE_integer(
            "batch_size",
            None,
            "Molecules per compiled sampling batch (default: config.sample.batch_size).",
            lower_bound=1,
        ),
        compute_dtype=flags.DEFINE_enum(
            "compute_dtype",
            None,
            ["float32", "bfloat16"],
            "QM9 runs: matmul dtype of the model (default: the run's model.compute_dtype); "
            "bfloat16 samples a float32 checkpoint with bf16 matmuls (faster on GPUs and CPUs "
            "with AVX-512 BF16).",
        ),
    )


def resolve_source(f: SamplingFlags, workdir: str | None, **kwargs: Any):
    """The model the flags name: `experiments.qm9.pretrained.resolve_source_or_exit` of
    `--workdir`/`--pretrained`/`--official` with the flags' checkpoint, gamma composition
    and compute dtype; `kwargs` (`out=` or `writes=`) pass through."""
    from experiments.qm9.pretrained import resolve_source_or_exit

    return resolve_source_or_exit(
        workdir,
        f.pretrained.value,
        f.official.value,
        checkpoint=f.checkpoint.value,
        gamma_composition=f.gamma_composition.value,
        compute_dtype=f.compute_dtype.value,
        **kwargs,
    )


def or_default(value: Any, default: Any) -> Any:
    """A flag's `value`, or `default` where the flag was not given (None)."""
    return default if value is None else value


def sampling_settings(f: SamplingFlags, config) -> tuple[int, str, int]:
    """`(num_steps, sampler, seed)`: the flags where given, else the run's config.

    A sampler of the other generative process (e.g. `--sampler ancestral` for a
    flow-matching run) exits with a one-line error.
    """
    from experiments.qm9.sampling import check_sampler

    sampler = or_default(f.sampler.value, config.sample.sampler)
    try:
        check_sampler(config, sampler)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return (
        or_default(f.num_steps.value, config.sample.num_steps),
        sampler,
        or_default(f.seed.value, config.seed),
    )
