# COMMAND: python -m experiments.train --config configs/qm9_conformers_diff_target.py:small --workdir workdirs/qm9_conformers_diff_target_small
"""Conformer generation on qm9_conformers: diffusion, symmetrised target (paper 000).

Variants: (none) the GPU-scale setting, `small` (minutes on a CPU, stopped by a training-time
budget), `smoke` (seconds). Shared keys:
`configs/conformers_common.py`.
"""

from configs import conformers_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_conformers_diff_target")
    c = conformers_common.base(
        "qm9_conformers_diff_target", source="qm9_conformers", generator="diffusion"
    )
    c.diffusion.x_target = "symmetrised"  # paper 000, eq. 4
    return conformers_common.apply_size(c, size)
