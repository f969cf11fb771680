"""The generation model of a config: built, initialised, restored from a workdir."""

from __future__ import annotations

import functools

import jax
import numpy as np
from flax import nnx

from experiments.common import state as common_state
from experiments.common.io import checkpoint_dir, load_config_json
from experiments.qm9.input_pipeline import dataset_of
from symdiff_jax.models.factory import build_denoiser
from symdiff_jax.train import Checkpointer


def build_model(config, key: jax.Array) -> nnx.Module:
    """The denoiser of `config.model`."""
    return build_denoiser(config.model, dataset_of(config).spec.num_features, key)


def initial_state(config, key: jax.Array):
    """`(graphdef, state, optimizer)` at step 0 (with `init_from` applied)."""
    return common_state.initial_state(
        config, functools.partial(build_model, config), key, pretrained_eps(config)
    )


def abstract_state(config):
    """`(graphdef, TrainState of ShapeDtypeStructs)`: the restore target of a run's checkpoints."""
    return common_state.abstract_state(config, functools.partial(build_model, config))


def restore_workdir(workdir: str, *, best: bool = False, step: int | None = None):
    """`(config, graphdef, state)` of the checkpoint of a finished or running workdir."""
    config = load_config_json(workdir)
    graphdef, target = abstract_state(config)
    with Checkpointer(checkpoint_dir(workdir)) as ckpt:
        state = ckpt.restore(target, step=step, best=best)
    return config, graphdef, state


def load_pretrained_eps(path: str, params):
    """Replaces `params["eps_net"]` by the EMA `eps_net` of a trained `dit` run.

    Paper 002, appendix C.3 (pretrain-finetune): a DiT trained without symmetrisation
    becomes the eps-network of SymDiff. `path` is the DiT run's workdir (or its
    `checkpoints/` directory); its config must build the same DiT.
    """
    workdir = (
        path[: -len("checkpoints")].rstrip("/")
        if path.rstrip("/").endswith("checkpoints")
        else path
    )
    source_config, _, source_state = restore_workdir(workdir)
    source = nnx.to_pure_dict(source_state.ema_params)
    target = nnx.to_pure_dict(params)
    if "eps_net" not in source or "eps_net" not in target:
        raise ValueError(
            f"init_from={path!r}: both runs need an eps_net (a DiT); the source is a "
            f"{source_config.model.kind!r} model."
        )
    src_shapes = jax.tree.map(np.shape, source["eps_net"])
    tgt_shapes = jax.tree.map(np.shape, target["eps_net"])
    if src_shapes != tgt_shapes:
        raise ValueError(
            f"init_from={path!r}: its DiT does not match this config's eps-network "
            "(model.hidden/depth/heads/node_embed/num_gaussians must agree)."
        )
    target["eps_net"] = source["eps_net"]
    nnx.replace_by_pure_dict(params, target)
    return params


def pretrained_eps(config):
    """`params -> params` with `config.init_from`'s eps-network, or None without one."""
    if not config.init_from:
        return None
    return functools.partial(load_pretrained_eps, config.init_from)
