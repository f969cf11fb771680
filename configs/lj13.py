# COMMAND: python -m experiments.train --config configs/lj13.py --workdir workdirs/lj13
"""LJ13, flow matching / score matching at kT = 1 (paper 002, appendix E).

Variants: `configs/lj13.py:<variant>[,smoke]`, e.g. `:egnn_flow`, `:symdiff_score_target`,
`:smoke`; the list and the shared keys are in `configs/particles_common.py`. No variant:
the best SymDiff variant, trained for 30 minutes.
"""

from configs import particles_common


def get_config(arg=None):
    return particles_common.get("lj13", arg)
