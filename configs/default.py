# COMMAND: python -m experiments.train
"""The main job: the 2D rotation + permutation toy of paper 000, `quick` variant.

Trains an EGNN denoiser on one 4-point sample with the plain data target and with
the exact symmetrised target over O(2) x S_4, then samples with DDIM at 10..50 steps
and reports the aligned RMSD (`rmsd/<method>/steps_<k>`), the gradient-variance
ratios of Theorem 1 and figures. A few minutes on a 2-core CPU.

Variants: `configs/default.py:smoke` (seconds).
"""

import importlib.util
import os


def _toy_2d():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_2d.py")
    spec = importlib.util.spec_from_file_location("configs_toy_2d", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(arg=None):
    variant = arg or "quick"
    if variant not in ("quick", "smoke"):
        raise ValueError(f"Unknown variant {variant!r} of configs/default.py; use smoke.")
    return _toy_2d().get_config(variant)
