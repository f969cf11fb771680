# COMMAND: python -m experiments.train --config configs/geom_qm9_flow_target.py:small --workdir workdirs/geom_qm9_flow_target_small --config.data.geom_dir=<GEOM>/QM9
"""Conformer generation on GEOM-QM9: flow matching, symmetrised target (paper 000, Table 2).

Variants: (none) the GPU-scale setting, `small` (minutes on a CPU, stopped by a training-time
budget), `smoke` (seconds). Shared keys:
`configs/conformers_common.py`.
"""

from configs import conformers_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "geom_qm9_flow_target")
    c = conformers_common.base("geom_qm9_flow_target", source="geom_qm9", generator="flow")
    c.diffusion.x_target = "symmetrised"  # paper 000, eq. 4
    return conformers_common.apply_size(c, size)
