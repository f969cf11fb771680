# COMMAND: python -m experiments.train --config configs/qm9_conformers_diff_target.py:small --workdir workdirs/qm9_conformers_diff_target_small
"""Conformer generation on qm9_conformers: diffusion, symmetrised target (paper 000).

Variants: (none) the GPU-scale setting, `small` (minutes on a CPU, stopped by a training-time
budget), `smoke` (seconds). All keys: `symdiff_jax/experiments/conformer_config.py`.
"""

from symdiff_jax.experiments.conformer_config import conformer_config


def get_config(arg=None):
    return conformer_config("qm9_conformers_diff_target", arg)
