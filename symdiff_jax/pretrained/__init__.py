"""Trained models in symdiff_jax: the ones shipped with the package, and official checkpoints.

`load(name) -> (denoiser, config)` loads a model shipped inside the package
(`available()` lists them; `symdiff_jax.pretrained.export` is their format and writer).
`load_official(directory) -> (denoiser, config)` reads an official SymDiff or EDM run
directory (needs torch, the `convert` extra); `symdiff_jax.pretrained.convert` maps
official state dicts onto our modules; `LearnedGammaDenoiser` reproduces the official
learned-gamma composition (or the paper's).
"""

from symdiff_jax.pretrained.denoisers import (
    COMPOSITIONS,
    LearnedGammaDenoiser,
    compose_rotation,
    orthogonal_from_raw,
)
from symdiff_jax.pretrained.export import write_pretrained
from symdiff_jax.pretrained.official import MODELS, load_official, read_args, read_state_dict
from symdiff_jax.pretrained.shipped import MODELS_ENV, available, load, read_card, read_config

__all__ = [
    "COMPOSITIONS",
    "MODELS",
    "MODELS_ENV",
    "LearnedGammaDenoiser",
    "available",
    "compose_rotation",
    "load",
    "load_official",
    "orthogonal_from_raw",
    "read_args",
    "read_card",
    "read_config",
    "read_state_dict",
    "write_pretrained",
]
