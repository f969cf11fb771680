# COMMAND: python -m experiments.train --config configs/qm9_symdiff_h.py:small --workdir workdirs/qm9_symdiff_h_small
"""The DiT symmetrised with gamma = Haar on O(3) (paper 002, Table 1 "SymDiff-H").

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_symdiff_h")
    c = qm9_common.base("symdiff_h", kind="symdiff_h")
    return qm9_common.apply_size(c, size)
