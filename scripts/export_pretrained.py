r"""Exports a QM9 training workdir as a model shipped with the package.

    python scripts/export_pretrained.py --workdir workdirs/qm9_symdiff_cpu --name qm9_symdiff_cpu

Restores the EMA parameters of the newest intact checkpoint (or `--checkpoint best` / a
step) without writing into the workdir, and writes
`<out_root>/<name>/{params.npz, config.json, metrics.json}` atomically (default out_root:
the package's `symdiff_jax/pretrained/models`). Then
`symdiff_jax.pretrained.load("<name>")` and
`python -m experiments.sample --pretrained <name>` use it.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> int:
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)  # run from a checkout: `experiments` and `configs` import
    from symdiff_jax.pretrained.shipped import PACKAGE_MODELS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--workdir", required=True, help="a QM9 training workdir")
    parser.add_argument("--name", required=True, help="the model's name, e.g. qm9_symdiff_cpu")
    parser.add_argument(
        "--out_root", default=PACKAGE_MODELS, help="models root (default: the package's)"
    )
    parser.add_argument("--checkpoint", default="latest", help="'latest', 'best' or a step number")
    args = parser.parse_args(argv)

    from experiments.common import runtime
    from experiments.qm9.pretrained import export_workdir
    from symdiff_jax.train import CheckpointError

    runtime.quiet_library_logs()
    try:
        path, card = export_workdir(args.workdir, args.name, args.out_root, args.checkpoint)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    training = card["training"]
    print(f"exported step {card['step']} of {args.workdir} to {path} ({size / 1e6:.2f} MB)")
    for name in ("train/loss", "val/nll"):
        if name in training:
            print(f"  {name} {training[name]:.4g} (step {training[name + '_step']})")
    print(f"try it: python -m experiments.sample --pretrained {args.name} --num_samples 100")
    return 0


if __name__ == "__main__":
    sys.exit(main())
