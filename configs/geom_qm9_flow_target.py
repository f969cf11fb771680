# COMMAND: python -m experiments.train --config configs/geom_qm9_flow_target.py:small --workdir workdirs/geom_qm9_flow_target_small --config.data.geom_dir=<GEOM>/QM9
"""Conformer generation on GEOM-QM9: flow matching, symmetrised target (paper 000, Table 2).

Variants: (none) the GPU-scale setting, `small` (minutes on a CPU, stopped by a training-time
budget), `smoke` (seconds). All keys: `symdiff_jax/experiments/conformer_config.py`.
"""

from symdiff_jax.experiments.conformer_config import conformer_config


def get_config(arg=None):
    return conformer_config("geom_qm9_flow_target", arg)
