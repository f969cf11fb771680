"""Models shipped with the package: `load(name) -> (denoiser, config)`.

    from symdiff_jax.pretrained import load
    denoiser, config = load("qm9_symdiff_cpu")
    eps_x, eps_h = denoiser(key, x, h, t, mask)

Each model is a directory `<models root>/<name>/` in the format of
`symdiff_jax.pretrained.export` (`params.npz`, `config.json`, `metrics.json`). The models
root is, in this order, the `models_root` argument, the environment variable
`SYMDIFF_JAX_MODELS`, or the `models/` folder of this package.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from symdiff_jax.models.factory import build_denoiser
from symdiff_jax.pretrained.export import FILES, FORMAT, check_name, named_leaves

#: Environment variable naming another models root.
MODELS_ENV = "SYMDIFF_JAX_MODELS"
#: The models shipped inside the package.
PACKAGE_MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def models_root(root: str | None = None) -> str:
    """The models root: `root`, else `$SYMDIFF_JAX_MODELS`, else the package's `models/`."""
    return root or os.environ.get(MODELS_ENV) or PACKAGE_MODELS


def available(root: str | None = None) -> list[str]:
    """Names of the complete model directories under the models root (sorted)."""
    base = models_root(root)
    if not os.path.isdir(base):
        return []
    return sorted(
        n
        for n in os.listdir(base)
        if not n.startswith(".") and all(os.path.isfile(os.path.join(base, n, f)) for f in FILES)
    )


def model_dir(name: str, root: str | None = None) -> str:
    """The directory of the model `name`.

    Raises:
      ValueError: no complete model of that name; the message lists the available ones.
    """
    base = models_root(root)
    if name in available(root):
        return os.path.join(base, check_name(name))
    names = available(root)
    listed = ", ".join(names) if names else "none"
    raise ValueError(
        f"No shipped model named {name!r} in {base} (available: {listed}). Pass one of "
        f"these, or point ${MODELS_ENV} at a folder of exported models "
        "(scripts/export_pretrained.py)."
    )


def _read_json(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def read_card(name: str, root: str | None = None) -> dict[str, Any]:
    """The model card (`metrics.json`) of `name`: step, sizes, training and scores."""
    return _read_json(os.path.join(model_dir(name, root), "metrics.json"))


def read_config(name: str, root: str | None = None) -> ml_collections.ConfigDict:
    """The training config (`config.json`) of `name`."""
    return ml_collections.ConfigDict(_read_json(os.path.join(model_dir(name, root), "config.json")))


def fill_params(abstract: nnx.State, arrays: dict[str, np.ndarray], source: str) -> nnx.State:
    """`abstract` (shapes only) with every leaf replaced by `arrays[flat name]`.

    Raises:
      ValueError: missing, extra or mis-shaped parameters (the message names them).
    """
    named = named_leaves(abstract)
    shapes = {k: tuple(v.shape) for k, v in named}
    missing = sorted(set(shapes) - set(arrays))
    extra = sorted(set(arrays) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(arrays) if arrays[k].shape != shapes[k])
    if missing or extra or wrong:
        raise ValueError(
            f"The parameters in {source} do not fit the model its config builds "
            f"(missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]}); "
            "re-export the model with this version of symdiff_jax."
        )
    treedef = jax.tree_util.tree_structure(nnx.to_pure_dict(abstract))
    filled = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[n]) for n, _ in named])
    state = jax.tree.map(lambda v: v, abstract)  # a copy; the abstract state is kept
    nnx.replace_by_pure_dict(state, filled)
    return state


def load(name: str, *, models_root: str | None = None):
    """Loads a shipped model as `(denoiser, config)`, like `load_official`.

    Args:
      name: the model's name, e.g. "qm9_symdiff_cpu" (`available()` lists them).
      models_root: another models root (default `$SYMDIFF_JAX_MODELS`, else the package's).

    Returns:
      `(denoiser, config)`: `denoiser(key, x, h, t, mask) -> (eps_x, eps_h)`, the EMA
      parameters of the run (float32), with `x [B, N, 3]`, `h [B, N, F]` the scaled atom
      features (`config.data.dataset`'s layout: QM9 one-hot / 4 and charge / 10), `t [B]`
      in [0, 1], `mask [B, N]`; `config` the training run's `ConfigDict` (its
      `diffusion.*` schedule, T and precision drive our samplers and VLB, `sample.*` the
      default sampler settings, `data.*` the dataset). `read_card(name)` adds the training
      step, the training size histogram and the recorded scores.

    Raises:
      ValueError: an unknown name (the message lists the available ones), a card of
        another format, or parameters that do not fit the config's model.
    """
    directory = model_dir(name, models_root)
    card = _read_json(os.path.join(directory, "metrics.json"))
    if card.get("format") != FORMAT:
        raise ValueError(
            f"{directory} has format {card.get('format')!r}; this symdiff_jax reads format "
            f"{FORMAT}. Re-export it with scripts/export_pretrained.py."
        )
    config = ml_collections.ConfigDict(_read_json(os.path.join(directory, "config.json")))
    num_features = int(card["num_features"])
    key = jax.random.key(int(config.get("seed", 0)))
    abstract = nnx.eval_shape(lambda: build_denoiser(config.model, num_features, key))
    graphdef, state = nnx.split(abstract)
    with np.load(os.path.join(directory, "params.npz"), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    params = fill_params(state, arrays, directory)
    return nnx.merge(graphdef, params), config
