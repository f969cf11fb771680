# COMMAND: python -m experiments.train --config configs/qm9_dit.py:small --workdir workdirs/qm9_dit_small
"""A plain DiT eps-network, no symmetrisation (paper 002, Table 1 "DiT").

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). All keys: `symdiff_jax/experiments/qm9_config.py`.
"""

from symdiff_jax.experiments.qm9_config import qm9_config


def get_config(arg=None):
    return qm9_config("dit", arg)
