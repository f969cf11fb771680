# COMMAND: python -m experiments.train --config configs/qm9_dit_aug.py:small --workdir workdirs/qm9_dit_aug_small
"""The DiT trained with Haar O(3) data augmentation (paper 002, Table 1 "DiT-Aug").

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). All keys: `symdiff_jax/experiments/qm9_config.py`.
"""

from symdiff_jax.experiments.qm9_config import qm9_config


def get_config(arg=None):
    return qm9_config("dit_aug", arg)
