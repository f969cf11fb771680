"""The model and optimizer state every trained experiment builds the same way.

Each experiment passes `build(key) -> nnx.Module` (its model at a key); the functions here
make its parameters, its optimizer, its training state and the abstract state that
checkpoints restore into.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from symdiff_jax.diffusion import get_schedule
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.train.optim import make_optimizer
from symdiff_jax.train.state import TrainState, init_train_state, split_model

Build = Callable[[jax.Array], nnx.Module]


def make_schedule(diffusion) -> Schedule:
    """The noise schedule of a `config.diffusion` group.

    `diffusion.schedule` is any name of `symdiff_jax.diffusion.get_schedule`; a discrete
    `polynomial_<p>` schedule also takes `diffusion.num_steps` (T) and
    `diffusion.precision`, and `linear_sigma` takes `diffusion.sigma_min`/`sigma_max`.
    """
    name = diffusion.schedule
    if name.startswith("polynomial"):
        return get_schedule(name, num_steps=diffusion.num_steps, precision=diffusion.precision)
    if name == "linear_sigma":
        return get_schedule(name, sigma_min=diffusion.sigma_min, sigma_max=diffusion.sigma_max)
    return get_schedule(name)


def init_params(build: Build, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """`(graphdef, params)` of `build(key)`, the parameters made in one compiled call.

    Eager initialisation of an NNX module runs op by op (seconds on CPU even for small
    models); the structure comes from `nnx.eval_shape` and the values from one `jit`.
    """
    graphdef, _ = split_model(nnx.eval_shape(lambda: build(key)))
    params = jax.jit(lambda k: split_model(build(k))[1])(key)
    return graphdef, params


def _path_head(path) -> str:
    head = path[0]
    return str(getattr(head, "key", getattr(head, "name", head)))


def make_train_optimizer(config, params) -> optax.GradientTransformation:
    """AdamW from `config.optim`; with `config.freeze_eps`, `eps_net` gets no updates."""
    o = config.optim
    opt = make_optimizer(
        o.learning_rate,
        weight_decay=o.weight_decay,
        amsgrad=o.amsgrad,
        clip_norm=o.clip_norm or None,
        warmup_steps=o.warmup_steps,
    )
    if not config.get("freeze_eps", False):
        return opt
    if "eps_net" not in nnx.to_pure_dict(params):
        raise ValueError("freeze_eps needs a model with an eps_net (kinds dit, symdiff*).")

    def labels(tree):
        def label(path, _):
            return "frozen" if _path_head(path) == "eps_net" else "train"

        return jax.tree_util.tree_map_with_path(label, tree)

    return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


def abstract_state(config, build: Build) -> tuple[nnx.GraphDef, TrainState]:
    """`(graphdef, TrainState of ShapeDtypeStructs)`: the restore target of a run's checkpoints.

    Built with `nnx.eval_shape` / `jax.eval_shape`, so no array is computed.
    """
    graphdef, params = split_model(nnx.eval_shape(lambda: build(jax.random.key(config.seed))))
    optimizer = make_train_optimizer(config, params)
    return graphdef, jax.eval_shape(lambda p: init_train_state(p, optimizer), params)


def to_device(batch: Mapping, keys: Sequence[str]) -> dict[str, jax.Array]:
    """The arrays `keys` of a host batch, as JAX arrays."""
    return {k: jnp.asarray(batch[k]) for k in keys}


@functools.lru_cache(maxsize=16)
def compiled_with_model(fn: Callable, graphdef: nnx.GraphDef, *static) -> Callable:
    """`jit((params, *args) -> fn(nnx.merge(graphdef, params), *args, *static))`, cached.

    One compilation per `(fn, graphdef, static)`: `fn` is a module-level function and
    `static` its hashable trailing arguments (schedule, step count, ...).
    """

    def call(params, *args):
        return fn(nnx.merge(graphdef, params), *args, *static)

    return jax.jit(call)


def initial_state(
    config, build: Build, key: jax.Array, prepare: Callable[[nnx.State], nnx.State] | None = None
) -> tuple[nnx.GraphDef, TrainState, optax.GradientTransformation]:
    """`(graphdef, state, optimizer)` at step 0.

    `prepare(params) -> params` edits the fresh parameters before the optimizer sees them
    (e.g. QM9's `init_from`: a pretrained eps-network).
    """
    graphdef, params = init_params(build, key)
    if prepare is not None:
        params = prepare(params)
    optimizer = make_train_optimizer(config, params)
    return graphdef, init_train_state(params, optimizer), optimizer
