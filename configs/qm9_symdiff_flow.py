# COMMAND: python -m experiments.train --config configs/qm9_symdiff_flow.py:small --workdir workdirs/qm9_symdiff_flow_small
"""Flow-matching SymDiff on QM9 (paper 002, appendix E.2): the learned-gamma DiT as a velocity.

The molecule `[x, h]` (EDM's feature scaling: one-hot / 4, charge / 10) flows from
`N_U(0, I) x N(0, I)` at t = 0 to the data at t = 1 along the optimal-transport path;
the network is SymDiff's symmetrised DiT (`model.kind="symdiff"`), sampled with the
symmetrised Euler sampler (a fresh rotation at every step). There is no likelihood
bound, so checkpoints are ranked by the validation loss and `evaluate.test_nll` is off.

Variants: (none) the paper-scale network, `small` (a CPU-sized run of the same recipe),
`smoke` (seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_symdiff_flow")
    c = qm9_common.base("symdiff_flow", kind="symdiff")
    c.generator = "flow_matching"
    c.diffusion.sigma_min = 0.0  # width of the path at the data (Lipman et al., eq. 20)
    c.sample.sampler = "euler"
    c.evaluate.test_nll = False
    return qm9_common.apply_size(c, size)
