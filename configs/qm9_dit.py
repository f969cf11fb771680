# COMMAND: python -m experiments.train --config configs/qm9_dit.py:small --workdir workdirs/qm9_dit_small
"""A plain DiT eps-network, no symmetrisation (paper 002, Table 1 "DiT").

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_dit")
    c = qm9_common.base("dit", kind="dit")
    return qm9_common.apply_size(c, size)
