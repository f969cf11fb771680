"""The conformer generator of a config: built and restored from a workdir."""

from __future__ import annotations

import functools

import jax
from flax import nnx

from experiments.common import state as common_state
from experiments.conformers.input_pipeline import num_features_of
from symdiff_jax.models.factory import build_conformer_net


def build_net(config, num_features: int, key: jax.Array) -> nnx.Module:
    """The generator network of `config.model` for atom features of width `num_features`."""
    return build_conformer_net(config.model, num_features, key)


def abstract_state(config):
    """`(graphdef, TrainState of ShapeDtypeStructs)` for restoring checkpoints."""
    build = functools.partial(build_net, config, num_features_of(config))
    return common_state.abstract_state(config, build)
