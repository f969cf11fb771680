# COMMAND: python -m experiments.train --config configs/geom_symdiff.py --config.data.source=/path/to/geom --workdir workdirs/geom_symdiff
"""SymDiff on GEOM-Drugs with hydrogens (paper 002, section 4.2, Table 4).

Needs EDM's processed GEOM-Drugs files in `data.source` (see
`symdiff_jax.data.geom_drugs.load_geom_drugs`; about 50 GB to download, then EDM's
`build_geom_dataset.py`). Facts (official SymDiff GEOM script): the QM9 SymDiff
network (384 x 12 x 6, gamma 128 x 8 x 4), lr 1e-4, batch 256, gradient-norm clip 2.0,
EMA 0.9999, AMSGrad, weight decay 1e-12, 55 epochs, EDM's polynomial_2 schedule, and
no charge feature (`include_charges=False`).

Variants: (none) the paper setting, `small` (a CPU-sized run), `smoke` (seconds; the
tests run it on small files in EDM's format that they write themselves). Shared keys:
`configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size

# GEOM-Drugs train split: 5,538,014 conformers (EDM's split of 6,922,516); 55 epochs.
GEOM_TRAIN = 5_538_014


def get_config(arg=None):
    size = parse_size(arg, "geom_symdiff")
    c = qm9_common.apply_size(qm9_common.base("geom_symdiff", kind="symdiff"), size)
    c.experiment = "geom_drugs"
    c.data.dataset = "geom_drugs"
    c.data.max_atoms = 181
    c.data.bucket_sizes = ()
    if not size:
        c.optim.learning_rate = 1e-4
        c.num_train_steps = 55 * (GEOM_TRAIN // 256)
    return c
