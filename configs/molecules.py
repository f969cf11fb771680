# COMMAND: python -m experiments.train --config configs/molecules.py:smoke --config.data.source=ligands.sdf --workdir workdirs/molecules_smoke
"""SymDiff (paper 002, the QM9 recipe) trained on your own molecules.

`data.source` (required) is a directory of `.sdf`/`.xyz` files, one multi-molecule SDF, an
`.xyz` file or an ASE database (`.db`, needs `ase`); see
`symdiff_jax.data.sources.load_molecule_source`. The element set (`data.elements`, "" = the
elements present) and the padded width (`data.max_atoms`, 0 = the largest molecule) are read
from the data unless set; the train / valid / test split is a permutation seeded by
`data.seed` with `data.split_fractions`. Unreadable records are skipped with one warning
that counts them, or fail the run with `data.strict=true`. Samples are scored (stability,
validity, uniqueness, novelty against the source's training SMILES) and written as npz,
SDF, xyz and an ASE database (when `ase` is installed).

Variants: (none) the paper's QM9 network (GPU scale), `small` (a CPU-sized run), `smoke`
(seconds). Shared keys: `configs/qm9_common.py`.
"""

from configs import qm9_common
from configs.common import parse_size


def get_config(arg=None):
    size = parse_size(arg, "molecules")
    c = qm9_common.apply_size(qm9_common.base("molecules", kind="symdiff"), size)
    c.data.dataset = "molecules"
    c.data.source = ""  # required: a directory, .sdf, .xyz or .db
    c.data.strict = False  # True: the first unreadable record fails the run
    c.data.elements = ""  # "" = the elements of the source; else e.g. "H,C,N,O,F,S,Cl"
    c.data.max_atoms = 0  # 0 = the largest molecule of the source
    c.data.seed = 0  # seed of the train / valid / test permutation
    c.data.split_fractions = (0.8, 0.1, 0.1)
    c.data.bucket_sizes = ()
    c.evaluate.novelty = True  # against the source's training SMILES
    if not size:
        c.num_train_steps = 100_000
    return c
