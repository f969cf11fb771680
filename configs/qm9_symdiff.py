# COMMAND: python -m experiments.train --config configs/qm9_symdiff.py:small --workdir workdirs/qm9_symdiff_small
"""SymDiff: the DiT symmetrised with the learned gamma, 31.2M parameters (paper 002, Table 1).

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). All keys: `symdiff_jax/experiments/qm9_config.py`.
"""

from symdiff_jax.experiments.qm9_config import qm9_config


def get_config(arg=None):
    return qm9_config("symdiff", arg)
