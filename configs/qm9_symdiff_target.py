# COMMAND: python -m experiments.train --config configs/qm9_symdiff_target.py:small --workdir workdirs/qm9_symdiff_target_small
"""SymDiff trained towards the exact own-orbit O(3) symmetrised target (paper 000 on 002).

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). All keys: `symdiff_jax/experiments/qm9_config.py`.
"""

from symdiff_jax.experiments.qm9_config import qm9_config


def get_config(arg=None):
    return qm9_config("symdiff_target", arg)
