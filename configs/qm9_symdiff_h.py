# COMMAND: python -m experiments.train --config configs/qm9_symdiff_h.py:small --workdir workdirs/qm9_symdiff_h_small
"""The DiT symmetrised with gamma = Haar on O(3) (paper 002, Table 1 "SymDiff-H").

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). All keys: `symdiff_jax/experiments/qm9_config.py`.
"""

from symdiff_jax.experiments.qm9_config import qm9_config


def get_config(arg=None):
    return qm9_config("symdiff_h", arg)
