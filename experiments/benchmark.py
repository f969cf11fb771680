r"""Times the train step, sampling and the symmetrised target of a QM9/GEOM config.

    python -m experiments.benchmark --config configs/qm9_symdiff.py --batch_size 64
    python -m experiments.benchmark --config configs/qm9_symdiff.py:smoke --num_steps 10 \
        --config.sample.num_steps=5 --compilation_cache
    python -m experiments.benchmark --config configs/qm9_symdiff.py --bucket_widths none

Prints a table, then (as the last line) one JSON object with every figure:
`train_step_ms`, `sample_step_ms`, `compile_s`, `params`, `peak_rss_mb`, `devices`,
`target_ms`, `sample_run_s`, `target_overhead`, and with size buckets (the config's
`data.bucket_sizes` unless `--bucket_widths` says otherwise) `train_step_ms_bucketed`,
`sample_step_ms_bucketed`, ... What each figure is and how to
compare with the official PyTorch code: `experiments/qm9/benchmark.py`.
"""

from __future__ import annotations

import json
import os

from experiments.common import runtime

runtime.use_single_threaded_eigen()

from absl import app, flags  # noqa: E402 (after the XLA flags)
from ml_collections import config_flags  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(_REPO, "configs", "qm9_symdiff.py"),
    "QM9/GEOM config file, optionally with `:variant`.",
    lock_config=True,
)
_BATCH = flags.DEFINE_integer(
    "batch_size", None, "Molecules per batch (default: the config's).", lower_bound=1
)
_STEPS = flags.DEFINE_integer(
    "num_steps",
    10,
    "Timed calls per figure (a median; experiments.qm9.benchmark.MIN_TIMED_STEPS = 10 at least).",
    lower_bound=10,
)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed calls before timing.", lower_bound=1)
_ATOMS = flags.DEFINE_integer(
    "num_atoms", None, "Padded width (default data.max_atoms).", lower_bound=1
)
_DEVICES = flags.DEFINE_integer(
    "num_devices", None, "Devices of the data mesh (default all).", lower_bound=1
)
_FSDP = flags.DEFINE_boolean("fsdp", None, "FSDP-split the state (default: train_fsdp).")
_SAMPLE_RUNS = flags.DEFINE_integer(
    "sample_runs", 1, "Full sampling runs (0 skips them).", lower_bound=0
)
_BUCKETS = flags.DEFINE_list(
    "bucket_widths",
    None,
    "Size-bucket widths to time, e.g. 16,19,23,29 ('none': no buckets; default: the "
    "config's data.bucket_sizes).",
)
_SCAN_STEPS = flags.DEFINE_integer(
    "scan_steps",
    20,
    "Steps of the short sampling runs that time each bucket width.",
    lower_bound=1,
)
_SYNTHETIC = flags.DEFINE_boolean("synthetic", False, "Time a synthetic batch, not QM9.")
_KEEP = flags.DEFINE_boolean(
    "keep_freed_memory",
    True,
    "Keep freed memory mapped (runtime.keep_freed_memory; --nokeep_freed_memory: glibc's "
    "defaults, as a plain process has them).",
)
_CACHE = flags.DEFINE_boolean(
    "compilation_cache", False, "Use the persistent compilation cache (compile_s then drops)."
)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    kept = runtime.keep_freed_memory() if _KEEP.value else False
    runtime.quiet_library_logs()
    if _CACHE.value:
        runtime.enable_compilation_cache()
    from experiments.qm9 import benchmark
    from experiments.qm9.benchmark_figures import format_table

    config = _CONFIG.value
    if config.get("experiment") not in ("qm9", "geom_drugs"):
        raise app.UsageError(
            f"experiments.benchmark times molecule configs (experiment 'qm9' or 'geom_drugs'); "
            f"{flags.FLAGS['config'].config_filename} has experiment "
            f"{config.get('experiment')!r}."
        )
    results = benchmark.benchmark(
        config,
        batch_size=_BATCH.value,
        num_steps=_STEPS.value,
        warmup=_WARMUP.value,
        num_atoms=_ATOMS.value,
        num_devices=_DEVICES.value,
        fsdp=_FSDP.value,
        sample_runs=_SAMPLE_RUNS.value,
        synthetic=_SYNTHETIC.value,
        bucket_widths=_bucket_widths(_BUCKETS.value),
        scan_steps=_SCAN_STEPS.value,
    )
    results["config"] = flags.FLAGS["config"].config_filename
    results["keep_freed_memory"] = kept
    print(format_table(results), flush=True)
    print(json.dumps(results, sort_keys=True), flush=True)


def _bucket_widths(values: list[str] | None) -> tuple[int, ...] | None:
    if values is None:
        return None
    if [v.lower() for v in values] in (["none"], [""], []):
        return ()
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise app.UsageError(
            f"--bucket_widths takes increasing integers (e.g. 16,19,23,29) or 'none'; got "
            f"{','.join(values)!r}."
        ) from None


def cli() -> None:
    """The `symdiff-benchmark` console script."""
    from experiments.common import cli as common_cli

    common_cli.run(main)


if __name__ == "__main__":
    cli()
