# COMMAND: python -m experiments.train --config configs/qm9_edm.py:small --workdir workdirs/qm9_edm_small
"""EDM's E(3)-equivariant EGNN, 9 layers x 256 features (paper 002, Table 1 "EDM").

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). All keys: `symdiff_jax/experiments/qm9_config.py`.
"""

from symdiff_jax.experiments.qm9_config import qm9_config


def get_config(arg=None):
    return qm9_config("edm", arg)
