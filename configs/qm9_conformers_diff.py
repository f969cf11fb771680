# COMMAND: python -m experiments.train --config configs/qm9_conformers_diff.py:small --workdir workdirs/qm9_conformers_diff_small
"""Conformer generation on qm9_conformers: Gaussian diffusion (ETDiff-style), data target.

Variants: (none) the GPU-scale setting, `small` (minutes on a CPU, stopped by a training-time
budget), `smoke` (seconds). Shared keys:
`configs/conformers_common.py`.
"""

from configs import conformers_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_conformers_diff")
    c = conformers_common.base(
        "qm9_conformers_diff", source="qm9_conformers", generator="diffusion"
    )
    return conformers_common.apply_size(c, size)
