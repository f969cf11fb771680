# COMMAND: python -m experiments.train --config configs/qm9_edm.py:small --workdir workdirs/qm9_edm_small
"""EDM's E(3)-equivariant EGNN, 9 layers x 256 features (paper 002, Table 1 "EDM").

Variants: (none) the paper setting (GPU scale), `small` (a CPU-sized run of the same
recipe), `smoke` (seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "qm9_edm")
    c = qm9_common.base("edm", kind="edm")
    # EDM's README command for QM9: lr 1e-4, batch 64, 3000 epochs (AMSGrad, weight decay
    # 1e-12 in its code).
    c.optim.learning_rate = 1e-4
    c.optim.amsgrad = True
    c.optim.weight_decay = 1e-12
    c.batch_size = 64
    c.num_train_steps = 3000 * qm9_common.EDM_STEPS_PER_EPOCH
    return qm9_common.apply_size(c, size)
