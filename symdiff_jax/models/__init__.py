"""Flax NNX networks: they know nothing about losses or diffusion."""

from symdiff_jax.models.dit import DiT
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.models.gamma_net import GammaNet
from symdiff_jax.models.mlp import ReflectionDenoiser, TimeMLP

__all__ = ["DiT", "EGNN", "GammaNet", "ReflectionDenoiser", "TimeMLP"]
