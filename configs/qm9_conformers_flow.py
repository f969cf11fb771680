# COMMAND: python -m experiments.train --config configs/qm9_conformers_flow.py:small --workdir workdirs/qm9_conformers_flow_small
"""Conformer generation on qm9_conformers: flow matching (ETFlow-style), data target.

Variants: (none) the GPU-scale setting, `small` (minutes on a CPU, stopped by a training-time
budget), `smoke` (seconds). All keys: `symdiff_jax/experiments/conformer_config.py`.
"""

from symdiff_jax.experiments.conformer_config import conformer_config


def get_config(arg=None):
    return conformer_config("qm9_conformers_flow", arg)
