r"""Our Metropolis splits against the published ones: the data check of a particle system.

    python -m experiments.particles.check_data --system lj13 --reference <folder of the .npy>

Generates (or reads from the cache) the splits of `configs/<system>.py` and prints, as JSON,
`reference_metrics` of our validation split against the published validation split, and of
the published validation split against the published test split (the floor any model can
reach with that many samples). The published test split is read only for that floor.
"""

from __future__ import annotations

import json

from absl import app, flags

import configs
from experiments.common.cli import quiet_backend_probe
from experiments.particles.input_pipeline import load_splits
from symdiff_jax.metrics.particles import reference_metrics
from symdiff_jax.systems import load_reference_split


def check(
    system: str, reference: str, cache_dir: str = "", sizes: str = "", sampling: str = ""
) -> dict[str, dict[str, float]]:
    """`{"ours_val_vs_published_val": ..., "published_val_vs_published_test": ...}`.

    `cache_dir`, `sizes` and `sampling` set the config's `data.*` keys of the same names.
    """
    config = configs.get_config(system)
    config.data.cache_dir, config.data.sizes, config.data.sampling = cache_dir, sizes, sampling
    ours = load_splits(config)["val"]
    published_val = load_reference_split(reference, system, "val")
    return {
        "ours_val_vs_published_val": reference_metrics(ours, reference, system, "val"),
        "published_val_vs_published_test": reference_metrics(
            published_val, reference, system, "test"
        ),
    }


def define_flags() -> None:
    """The command-line flags (defined only when run as a program, so that the module can be
    imported beside other tools that have a `--system` flag)."""
    flags.DEFINE_enum("system", "dw4", ["dw4", "lj13"], "Particle system.")
    flags.DEFINE_string("reference", None, "Folder of the published splits.", required=True)
    flags.DEFINE_string("cache_dir", "", "Split cache ('' = the config's default).")
    flags.DEFINE_string("sizes", "", "data.sizes of the config ('' = 100000/10000/10000).")
    flags.DEFINE_string("sampling", "", "data.sampling ('' = the system's settings).")


def main(argv) -> None:
    del argv
    quiet_backend_probe()
    f = flags.FLAGS
    print(json.dumps(check(f.system, f.reference, f.cache_dir, f.sizes, f.sampling), indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
