# COMMAND: python -m experiments.train --config configs/qm9_dit_aug.py:small --workdir workdirs/qm9_dit_aug_small
"""The DiT trained with Haar O(3) data augmentation (paper 002, Table 1 "DiT-Aug").

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_dit_aug")
    c = qm9_common.base("dit_aug", kind="dit")
    c.diffusion.augment_group = "O3"  # Haar O(3) data augmentation
    return qm9_common.apply_size(c, size)
