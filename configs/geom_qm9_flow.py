# COMMAND: python -m experiments.train --config configs/geom_qm9_flow.py:small --workdir workdirs/geom_qm9_flow_small --config.data.geom_dir=<GEOM>/QM9
"""Conformer generation on GEOM-QM9: flow matching, data target.

Variants: (none) the GPU-scale setting, `small` (minutes on a CPU, stopped by a training-time
budget), `smoke` (seconds). Shared keys:
`configs/conformers_common.py`.
"""

from configs import conformers_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "geom_qm9_flow")
    c = conformers_common.base("geom_qm9_flow", source="geom_qm9", generator="flow")
    return conformers_common.apply_size(c, size)
