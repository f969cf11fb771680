"""`load_official`: an official SymDiff or EDM run directory as our denoiser and config."""

from __future__ import annotations

import argparse
import io
import os
import pickle
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from symdiff_jax.models.denoisers import DiTDenoiser, EGNNDenoiser
from symdiff_jax.pretrained.convert import (
    build_dit,
    build_egnn,
    build_gamma_net,
    load_dit,
    load_egnn,
    load_gamma_net,
)
from symdiff_jax.pretrained.denoisers import COMPOSITIONS, LearnedGammaDenoiser

#: Official `--model` values this loader converts.
MODELS = ("dit_gaussian_dynamics", "dit_dit_gaussian_dynamics", "egnn_dynamics")

#: Number of atom types of the official datasets (`configs/datasets_config.py`), by
#: (dataset, remove_h).
NUM_ATOM_TYPES = {("qm9", False): 5, ("qm9", True): 4, ("geom", False): 16, ("geom", True): 15}

_SAFE_BUILTINS = frozenset(
    {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
     "range", "set", "slice", "str", "tuple"}
)  # fmt: skip

_INSTALL = 'pip install -e ".[convert]"'


class _ArgsUnpickler(pickle.Unpickler):
    """Unpickles only `argparse.Namespace` and plain builtin data types."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "argparse" and name == "Namespace":
            return argparse.Namespace
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        raise pickle.UnpicklingError(
            f"args.pickle refers to {module}.{name}; only argparse.Namespace and builtin "
            "data types are allowed in an official run's arguments."
        )


def read_args(path: str) -> argparse.Namespace:
    """Reads an official `args.pickle` with an unpickler restricted to `argparse.Namespace`
    and builtin data types (no other class can be instantiated, no code can run)."""
    with open(path, "rb") as f:
        args = _ArgsUnpickler(io.BytesIO(f.read())).load()
    if not isinstance(args, argparse.Namespace):
        raise ValueError(f"{path} holds a {type(args).__name__}, not an argparse.Namespace.")
    return args


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a `torch.save`d state dict with `torch.load(weights_only=True)` (tensors and
    plain containers only), as float32 numpy arrays, `module.` / `dynamics.` prefixes
    of the official `EnVariationalDiffusion` (and `DataParallel`) removed."""
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"Reading the official checkpoint {path} needs torch (CPU): {_INSTALL}"
        ) from err
    state = torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "dynamics."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if hasattr(value, "detach"):
            out[key] = value.detach().to(torch.float32).numpy()
    return out


def _dataset(args: argparse.Namespace) -> str:
    name = str(getattr(args, "dataset", "qm9"))
    if name.startswith("qm9"):
        return "qm9"
    if name.startswith("geom"):
        return "geom"
    raise ValueError(f"Unknown official dataset {name!r}; expected a qm9 or geom run.")


def official_config(args: argparse.Namespace, gamma_composition: str, ema: bool):
    """The settings with which our samplers, VLB and metrics reproduce an official run."""
    conditioning = list(getattr(args, "conditioning", []) or [])
    if conditioning:
        raise ValueError(
            f"The run is conditioned on {conditioning}; only unconditional runs are supported."
        )
    dataset = _dataset(args)
    remove_h = bool(getattr(args, "remove_h", False))
    include_charges = bool(getattr(args, "include_charges", True))
    num_types = NUM_ATOM_TYPES[(dataset, remove_h)]
    schedule = str(args.diffusion_noise_schedule)
    if not schedule.startswith("polynomial_"):
        raise ValueError(f"Only polynomial_<power> schedules are supported; got {schedule!r}.")
    model = str(args.model)
    cfg = ml_collections.ConfigDict(
        {
            "model": model,
            "dataset": dataset,
            "remove_h": remove_h,
            "include_charges": include_charges,
            "num_atom_types": num_types,
            "num_features": num_types + int(include_charges),
            "schedule": "polynomial",
            "schedule_power": float(schedule.split("_", 1)[1]),
            "num_steps": int(args.diffusion_steps),
            "precision": float(args.diffusion_noise_precision),
            "normalize_factors": [float(v) for v in args.normalize_factors],
            "loss_type": str(getattr(args, "diffusion_loss_type", "l2")),
            "conditioning": [],
            "ema": bool(ema),
            "gamma_composition": None,
            "eta": None,
            "noise_std": None,
            "fix_qr": None,
        }
    )
    if model == "dit_dit_gaussian_dynamics":
        cfg.gamma_composition = gamma_composition
        cfg.eta = "masked"
        cfg.noise_std = float(getattr(args, "noise_std", 1.0))
        cfg.fix_qr = bool(getattr(args, "fix_qr", True))
    return cfg


def load_official(
    directory: str,
    *,
    gamma_composition: str = "official",
    ema: bool = True,
    param_dtype=jnp.float32,
):
    """Loads an official SymDiff or EDM run directory as `(denoiser, config)`.

    The directory holds `args.pickle` (the training script's `argparse.Namespace`) and
    `generative_model_ema.npy` (or `generative_model.npy`; a `torch.save`d state dict).
    Security: `args.pickle` is read with an unpickler that admits only
    `argparse.Namespace` and builtin data types, and the weights with
    `torch.load(..., weights_only=True)`, so neither file can run code. Reading the
    weights needs torch (`pip install -e ".[convert]"`, the CPU wheel suffices).

    Args:
      directory: the run directory.
      gamma_composition: for `dit_dit_gaussian_dynamics` runs, "official" (default: the
        official sampler's `R = qr(f(R0^T x)) R0^T`) or "paper" (`R = R0 qr(f(R0^T x))`,
        paper 002 eq. 7, the O(3)-equivariant one); see `symdiff_jax.pretrained.denoisers`.
      ema: load the EMA weights (`generative_model_ema.npy`) when present.
      param_dtype: parameter dtype of our modules.

    Returns:
      `(denoiser, config)`: `denoiser(key, x, h, t, mask) -> (eps_x, eps_h)` with
      `x [B, N, 3]`, `h [B, N, F]` the normalised features the official dynamics receives
      (one-hot / `normalize_factors[1]`, charges / `normalize_factors[2]`), `t [B]` in
      [0, 1], `mask [B, N]`; `config` a `ConfigDict` with the model, dataset, feature
      layout, schedule (`polynomial`, its power, `num_steps`, `precision`), the
      normalisation factors, no conditioning, and for the learned gamma its composition,
      `eta` ("masked": the official plain masked normal), `noise_std` and `fix_qr`.

    Raises:
      FileNotFoundError: a file is missing. ImportError: torch is not installed.
      ValueError: an unsupported model, dataset, schedule or conditioning.
    """
    if gamma_composition not in COMPOSITIONS:
        raise ValueError(
            f"gamma_composition must be one of {COMPOSITIONS}; got {gamma_composition!r}."
        )
    args_path = os.path.join(directory, "args.pickle")
    if not os.path.exists(args_path):
        raise FileNotFoundError(f"No args.pickle in {directory}: is it an official run directory?")
    names = (
        ("generative_model_ema.npy", "generative_model.npy") if ema else ("generative_model.npy",)
    )
    found = [
        os.path.join(directory, n) for n in names if os.path.exists(os.path.join(directory, n))
    ]
    if not found:
        raise FileNotFoundError(f"No {' or '.join(names)} in {directory}.")
    args = read_args(args_path)
    model = str(getattr(args, "model", ""))
    if model not in MODELS:
        raise ValueError(f"Official model {model!r} is not supported; expected one of {MODELS}.")
    config = official_config(args, gamma_composition, found[0].endswith("_ema.npy"))
    state = read_state_dict(found[0])
    rngs = nnx.Rngs(0)
    f = config.num_features
    if model == "egnn_dynamics":
        egnn = build_egnn(args, f, rngs, param_dtype)
        load_egnn(egnn, state)
        return EGNNDenoiser(egnn), config
    dit = build_dit(args, f, rngs, param_dtype)
    if model == "dit_gaussian_dynamics":
        load_dit(dit, state, net="model")
        return DiTDenoiser(dit), config
    load_dit(dit, state, net="k")
    gamma_net = build_gamma_net(args, dit, rngs, param_dtype)
    load_gamma_net(gamma_net, state)
    denoiser = LearnedGammaDenoiser(
        dit,
        gamma_net,
        composition=gamma_composition,
        eta=config.eta,
        noise_std=config.noise_std,
        fix_qr=config.fix_qr,
    )
    return denoiser, config
