# COMMAND: python -m experiments.train --config configs/qm9_symdiff_target.py:small --workdir workdirs/qm9_symdiff_target_small
"""SymDiff trained towards the exact own-orbit O(3) symmetrised target (paper 000 on 002).

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_symdiff_target")
    c = qm9_common.base("symdiff_target", kind="symdiff")
    c.diffusion.x_target = "symmetrised"  # exact own-orbit O(3) target, eps form
    return qm9_common.apply_size(c, size)
