"""Official SymDiff and EDM checkpoints in symdiff_jax.

`load_official(directory) -> (denoiser, config)` reads an official run directory
(needs torch, the `convert` extra); `symdiff_jax.pretrained.convert` maps official state
dicts onto our modules; `LearnedGammaDenoiser` reproduces the official learned-gamma
composition (or the paper's).
"""

from symdiff_jax.pretrained.denoisers import (
    COMPOSITIONS,
    LearnedGammaDenoiser,
    compose_rotation,
    orthogonal_from_raw,
)
from symdiff_jax.pretrained.official import MODELS, load_official, read_args, read_state_dict

__all__ = [
    "COMPOSITIONS",
    "MODELS",
    "LearnedGammaDenoiser",
    "compose_rotation",
    "load_official",
    "orthogonal_from_raw",
    "read_args",
    "read_state_dict",
]
