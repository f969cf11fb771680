# COMMAND: python -m experiments.train --config configs/qm9_symdiff_star.py:small --workdir workdirs/qm9_symdiff_star_small
"""SymDiff*: a 115.6M-parameter eps-network with a larger gamma (paper 002, Table 1).

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). All keys: `symdiff_jax/experiments/qm9_config.py`.
"""

from symdiff_jax.experiments.qm9_config import qm9_config


def get_config(arg=None):
    return qm9_config("symdiff_star", arg)
