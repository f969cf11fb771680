# COMMAND: python -m experiments.train --config configs/qm9_symdiff_star.py:small --workdir workdirs/qm9_symdiff_star_small
"""SymDiff*: a 115.6M-parameter eps-network with a larger gamma (paper 002, Table 1).

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_symdiff_star")
    c = qm9_common.base("symdiff_star", kind="symdiff")
    c.optim.learning_rate = 1e-4
    m = c.model  # paper 002, appendix C: eps-network 768 x 12 x 12, gamma 216 x 10 x 8
    m.hidden, m.depth, m.heads, m.node_embed, m.num_gaussians = 768, 12, 12, 382, 382
    m.gamma.hidden, m.gamma.depth, m.gamma.heads, m.gamma.decoder_hidden = 216, 10, 8, 80
    return qm9_common.apply_size(c, size)
