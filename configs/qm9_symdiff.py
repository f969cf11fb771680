# COMMAND: python -m experiments.train --config configs/qm9_symdiff.py:small --workdir workdirs/qm9_symdiff_small
"""SymDiff: the DiT symmetrised with the learned gamma, 31.2M parameters (paper 002, Table 1).

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_symdiff")
    c = qm9_common.base("symdiff", kind="symdiff")
    return qm9_common.apply_size(c, size)
