"""Molecule generation with SymDiff and its baselines: QM9 and GEOM-Drugs (paper 002, 4.1-4.2).

`run(config, workdir)` trains the configured denoiser (`symdiff_jax.experiments.qm9_config`)
with checkpoints and exact resume, then samples with the EMA parameters and scores the
samples (atom/molecule stability, validity, uniqueness, novelty), writing the samples as
npz, SDF, xyz files and a picture. The pieces (`build_model`, `make_loss_fn`,
`sample_molecules_batched`, ...) are reused by `experiments.sample`, `experiments.evaluate`
and the notebooks.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from symdiff_jax.data import (
    batch_iterator,
    num_atoms_log_prob,
    num_batches,
    sample_num_atoms,
    sampling_batches,
    size_histogram,
)
from symdiff_jax.diffusion import get_schedule, polynomial_schedule
from symdiff_jax.diffusion.molecules import (
    QM9_FEATURES,
    FeatureSpec,
    molecules_from_batch,
    nll_terms,
    sample_molecules,
    training_losses,
)
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.experiments.molecule_data import MoleculeDataset, get_dataset
from symdiff_jax.metrics import rdkit_metrics, stability
from symdiff_jax.models.factory import build_denoiser
from symdiff_jax.train import Checkpointer, MetricWriter, sharding
from symdiff_jax.train.loop import fit
from symdiff_jax.train.optim import make_optimizer
from symdiff_jax.train.state import (
    TrainState,
    count_parameters,
    init_train_state,
    split_model,
)
from symdiff_jax.train.step import make_eval_step

DEVICE_KEYS = ("positions", "h", "charges", "mask")


# ----------------------------------------------------------------------------- pieces


def make_schedule(config) -> Schedule:
    """`polynomial_<p>` (EDM) or any name `symdiff_jax.diffusion.get_schedule` knows."""
    d = config.diffusion
    if d.schedule.startswith("polynomial_"):
        power = float(d.schedule.split("_", 1)[1])
        return polynomial_schedule(d.num_steps, precision=d.precision, power=power)
    return get_schedule(d.schedule)


def build_model(config, key: jax.Array) -> nnx.Module:
    """The denoiser of `config.model`."""
    return build_denoiser(config.model, dataset_of(config).spec.num_features, key)


def dataset_of(config) -> MoleculeDataset:
    """The dataset named by `config.data.dataset` (default QM9)."""
    return get_dataset(config.data.get("dataset", "qm9"))


def make_loss_fn(config, schedule: Schedule):
    """`(model, batch, key) -> {"loss": [B], ...}`: SymDiff's objective (eq. 14)."""
    d = config.diffusion
    spec = dataset_of(config).spec

    def loss_fn(model, batch, key):
        return training_losses(
            model,
            key,
            molecules_from_batch(batch, spec),
            schedule,
            num_steps=d.num_steps,
            spec=spec,
            x_target=d.x_target,
            target_group=d.target_group,
            augment_group=d.augment_group or None,
            max_atoms=config.data.max_atoms,
        )

    return loss_fn


def make_nll_fn(config, schedule: Schedule, histogram: np.ndarray):
    """`(model, batch, key) -> {"nll": [B], ...}`: the VLB estimate with `log p(N)`."""

    spec = dataset_of(config).spec

    def nll_fn(model, batch, key):
        mol = molecules_from_batch(batch, spec)
        n = jnp.sum(mol.mask, -1).astype(jnp.int32)
        return nll_terms(
            model,
            key,
            mol,
            schedule,
            num_steps=config.diffusion.num_steps,
            spec=spec,
            log_prob_num_atoms=num_atoms_log_prob(histogram, n),
        )

    return nll_fn


def to_device(batch: dict) -> dict[str, jax.Array]:
    """The arrays a step needs, as JAX arrays."""
    return {k: jnp.asarray(batch[k]) for k in DEVICE_KEYS}


def _subset(data: dict[str, np.ndarray], count: int, seed: int) -> dict[str, np.ndarray]:
    if not count or count >= len(data["num_atoms"]):
        return data
    idx = np.sort(np.random.default_rng(seed).permutation(len(data["num_atoms"]))[:count])
    return {k: v[idx] for k, v in data.items()}


def load_split(config, split: str, max_molecules: int = 0) -> dict[str, np.ndarray]:
    """One split of the config's dataset, optionally a fixed random subset."""
    return _subset(dataset_of(config).load(split, config.data), max_molecules, config.seed)


def train_batches(train: dict, config, start_step: int) -> Iterator[dict[str, jax.Array]]:
    """The batch of step `start_step + 1`, then the next...: a pure function of the step.

    Epoch `e` is a fixed shuffle of `(seed, e)`, so a resumed run sees exactly the
    batches an uninterrupted one would. Each batch is split over the data mesh of all
    devices (`sharding.shard_batch`); with several processes, every process transfers
    only its own rows.
    """
    buckets = tuple(config.data.bucket_sizes) or None
    per_epoch = num_batches(train["num_atoms"], config.batch_size, bucket_sizes=buckets)
    if per_epoch == 0:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training set "
            f"({len(train['num_atoms'])} molecules) or every size bucket."
        )
    epoch, offset = divmod(start_step, per_epoch)
    it = batch_iterator(
        train,
        config.batch_size,
        seed=config.seed,
        bucket_sizes=buckets,
        num_epochs=None,
        start_epoch=epoch,
        features=dataset_of(config).featurise,
    )
    mesh = sharding.make_mesh()
    return (
        sharding.shard_batch({k: b[k] for k in DEVICE_KEYS}, mesh)
        for b in itertools.islice(it, offset, None)
    )


def make_train_optimizer(config, params):
    """AdamW from `config.optim`; with `freeze_eps`, `eps_net` gets no updates."""
    import optax

    o = config.optim
    opt = make_optimizer(
        o.learning_rate,
        weight_decay=o.weight_decay,
        amsgrad=o.amsgrad,
        clip_norm=o.clip_norm or None,
        warmup_steps=o.warmup_steps,
    )
    if not config.freeze_eps:
        return opt
    if "eps_net" not in nnx.to_pure_dict(params):
        raise ValueError("freeze_eps needs a model with an eps_net (kinds dit, symdiff*).")

    def labels(tree):
        def label(path, _):
            return "frozen" if _path_head(path) == "eps_net" else "train"

        return jax.tree_util.tree_map_with_path(label, tree)

    return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


def _path_head(path) -> str:
    head = path[0]
    return str(getattr(head, "key", getattr(head, "name", head)))


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, "checkpoints")


def load_config_json(workdir: str) -> ml_collections.ConfigDict:
    """The config a run wrote to `<workdir>/config.json`."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No config.json in {workdir!r}: not a training workdir. Train first with "
            "`python -m experiments.train --config configs/qm9_<variant>.py --workdir <dir>`."
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def init_params(config, key: jax.Array):
    """`(graphdef, params)` of the config's model, the parameters made in one compiled call.

    Eager initialisation of an NNX module runs op by op (seconds on CPU even for small
    models); the structure comes from `nnx.eval_shape` and the values from one `jit`.
    """
    graphdef, _ = split_model(nnx.eval_shape(lambda: build_model(config, key)))
    params = jax.jit(lambda k: split_model(build_model(config, k))[1])(key)
    return graphdef, params


def initial_state(config, key: jax.Array):
    """`(graphdef, state, optimizer)` at step 0 (with `init_from` applied)."""
    graphdef, params = init_params(config, key)
    if config.init_from:
        params = load_pretrained_eps(config.init_from, params)
    optimizer = make_train_optimizer(config, params)
    return graphdef, init_train_state(params, optimizer), optimizer


def abstract_state(config):
    """`(graphdef, TrainState of ShapeDtypeStructs)`: the restore target of a run's checkpoints.

    Built with `nnx.eval_shape` / `jax.eval_shape`, so no array is computed.
    """
    model = nnx.eval_shape(lambda: build_model(config, jax.random.key(config.seed)))
    graphdef, params = split_model(model)
    optimizer = make_train_optimizer(config, params)
    return graphdef, jax.eval_shape(lambda p: init_train_state(p, optimizer), params)


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


# ----------------------------------------------------------------------------- sampling


def atomic_numbers_from_one_hot(
    one_hot: np.ndarray, mask: np.ndarray, atom_types=(1, 6, 7, 8, 9)
) -> np.ndarray:
    """Atomic numbers `[B, N]` from sampled one-hot types (0 on padded rows)."""
    z = np.asarray(atom_types)[np.argmax(np.asarray(one_hot), axis=-1)]
    return (z * (np.asarray(mask) > 0)).astype(np.int32)


@functools.lru_cache(maxsize=8)
def _compiled_sampler(
    graphdef, schedule: Schedule, num_steps: int, sampler: str, spec: FeatureSpec
):
    def sample(params, key, mask):
        model = nnx.merge(graphdef, params)
        return sample_molecules(
            model, key, mask, schedule, num_steps=num_steps, spec=spec, sampler=sampler
        )

    return jax.jit(sample)


def sample_molecules_batched(
    graphdef,
    params,
    key: jax.Array,
    histogram: np.ndarray,
    num_samples: int,
    *,
    schedule: Schedule,
    num_steps: int,
    batch_size: int,
    sampler: str = "ancestral",
    max_atoms: int = 29,
    bucket_sizes: tuple[int, ...] = (),
    progress: bool = False,
    spec: FeatureSpec = QM9_FEATURES,
    atom_types: tuple[int, ...] = (1, 6, 7, 8, 9),
) -> dict[str, np.ndarray]:
    """`num_samples` molecules with sizes from `histogram`, in compiled batches.

    The sizes are drawn first; with `bucket_sizes` each batch is padded to a bucket width
    (`data.sampling_batches`: the least padding and fewest batches, bounded shapes, so
    bounded compilations), which skips the work on padding that dominates small molecules.

    Returns numpy `positions [S, max_atoms, 3]`, `atomic_numbers [S, max_atoms]`,
    `charges [S, max_atoms]`, `mask [S, max_atoms]`, `num_atoms [S]`, in the order of
    the drawn sizes.
    """
    fn = _compiled_sampler(graphdef, schedule, int(num_steps), sampler, spec)
    k_sizes, k_batches = jax.random.split(key)
    sizes = np.asarray(sample_num_atoms(k_sizes, histogram, (int(num_samples),)))
    plan = sampling_batches(
        sizes, batch_size, bucket_sizes=tuple(bucket_sizes) or None, max_atoms=max_atoms
    )
    out = {
        "positions": np.zeros((num_samples, max_atoms, 3), np.float32),
        "atomic_numbers": np.zeros((num_samples, max_atoms), np.int32),
        "charges": np.zeros((num_samples, max_atoms), np.int32),
        "mask": np.zeros((num_samples, max_atoms), np.float32),
    }
    batches = enumerate(plan)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=len(plan), desc="sample", dynamic_ncols=True)
    for b, (rows, width) in batches:
        mask = (np.arange(width)[None] < sizes[rows, None]).astype(np.float32)
        s = jax.device_get(fn(params, jax.random.fold_in(k_batches, b), jnp.asarray(mask)))
        # Rows past the batch's distinct molecules repeat them (extra draws): dropped.
        real = len(np.unique(rows))
        dest, m = rows[:real], np.asarray(s["mask"])[:real]
        out["positions"][dest, :width] = np.asarray(s["positions"])[:real]
        out["atomic_numbers"][dest, :width] = atomic_numbers_from_one_hot(
            np.asarray(s["one_hot"])[:real], m, atom_types
        )
        out["charges"][dest, :width] = np.asarray(s["charges"])[:real]
        out["mask"][dest, :width] = m
    out["num_atoms"] = out["mask"].sum(-1).astype(np.int32)
    return out


def sample_metrics(samples: dict[str, np.ndarray], train_smiles=None) -> dict[str, float]:
    """Stability, validity, uniqueness (and novelty with `train_smiles`) of samples."""
    metrics = dict(stability(samples["positions"], samples["atomic_numbers"], samples["mask"]))
    rd = rdkit_metrics(
        samples["positions"],
        samples["atomic_numbers"],
        samples["mask"],
        train_smiles=train_smiles,
        canonicalise_train=False,
    )
    metrics.update({k: v for k, v in rd.items() if v is not None})
    return {k: float(v) for k, v in metrics.items()}


def save_samples(directory: str, samples: dict[str, np.ndarray], *, picture: bool = True) -> dict:
    """Writes `samples.npz`, `samples.sdf`, `xyz/` and `samples.png` into `directory`."""
    from symdiff_jax.data.drawing import molecule_grid_png
    from symdiff_jax.data.writers import write_samples_npz, write_sdf, write_xyz

    os.makedirs(directory, exist_ok=True)
    args = (samples["positions"], samples["atomic_numbers"], samples["mask"])
    paths = {
        "npz": os.path.join(directory, "samples.npz"),
        "sdf": os.path.join(directory, "samples.sdf"),
        "xyz": os.path.join(directory, "xyz"),
    }
    write_samples_npz(paths["npz"], *args)
    write_sdf(paths["sdf"], *args)
    write_xyz(paths["xyz"], *args)
    if picture:
        paths["png"] = molecule_grid_png(os.path.join(directory, "samples.png"), *args)
    return paths


def validation_nll(nll_step, params, batches: list[dict], key: jax.Array) -> float:
    """Mean VLB NLL (nats, with log p(N)) over fixed batches and fixed keys."""
    total, count = 0.0, 0
    for i, batch in enumerate(batches):
        nll = np.asarray(jax.device_get(nll_step(params, batch, jax.random.fold_in(key, i))["nll"]))
        total, count = total + float(nll.sum()), count + nll.size
    return total / max(count, 1)


def fixed_batches(data: dict, batch_size: int, features=None) -> list[dict[str, jax.Array]]:
    """Every full batch of `batch_size` molecules, in order (or the one short batch).

    `features`: the dataset's featuriser (default: QM9's).
    """
    kw = {} if features is None else {"features": features}

    def batches():
        return batch_iterator(data, batch_size, shuffle=False, drop_remainder=False, **kw)

    full = [to_device(b) for b in batches() if len(b["num_atoms"]) == batch_size]
    return full or [to_device(next(batches()))]


# ----------------------------------------------------------------------------- the run


def run(config, workdir: str) -> dict[str, Any]:
    """Trains, samples and evaluates one QM9 variant; returns the flat metrics."""
    t_start = time.time()
    key = jax.random.key(config.seed)
    k_init, k_train, k_eval, k_sample = jax.random.split(key, 4)

    train = load_split(config, "train", config.data.max_train)
    valid = load_split(config, "valid", config.data.max_valid)
    histogram = size_histogram(train["num_atoms"], config.data.max_atoms)
    schedule = make_schedule(config)

    graphdef, state, optimizer = initial_state(config, k_init)
    num_params = count_parameters(state.params)
    logging.info("%s: %d parameters", config.variant, num_params)
    # Data parallelism: the state replicated (or FSDP-split) over a mesh of all devices.
    mesh = sharding.make_mesh()
    shardings = sharding.state_shardings(state, mesh, fsdp=config.get("train_fsdp", False))
    state = sharding.place_state(state, shardings)
    k_train = sharding.replicate(k_train, mesh)
    is_main = sharding.is_main_process()  # only process 0 writes metrics and pictures

    checkpointer = Checkpointer(
        checkpoint_dir(workdir), max_to_keep=config.train.keep_checkpoints, best_metric="val/nll"
    )
    if checkpointer.latest_step() is not None:
        state = checkpointer.restore(state)
        logging.info("Resumed from step %d", int(state.step))
    start_step = int(jax.device_get(state.step))

    step_fn = sharding.make_sharded_train_step(
        graphdef,
        make_loss_fn(config, schedule),
        optimizer,
        mesh,
        shardings,
        ema_decay=config.optim.ema_decay,
        ema_warmup=config.optim.ema_warmup,
    )
    nll_step = make_eval_step(graphdef, make_nll_fn(config, schedule, histogram))
    dataset = dataset_of(config)
    valid_batches = fixed_batches(
        valid, min(config.batch_size, len(valid["num_atoms"])), dataset.featurise
    )
    sample_kw = dict(
        schedule=schedule,
        num_steps=config.sample.num_steps,
        sampler=config.sample.sampler,
        max_atoms=config.data.max_atoms,
        bucket_sizes=tuple(config.data.bucket_sizes),
        spec=dataset.spec,
        atom_types=dataset.atom_types,
    )

    def eval_fn(s: TrainState) -> dict[str, float]:
        params = sharding.host_local(s.ema_params)
        return {"val/nll": validation_nll(nll_step, params, valid_batches, k_eval)}

    def sample_fn(s: TrainState) -> dict[str, float]:
        samples = sample_molecules_batched(
            graphdef,
            sharding.host_local(s.ema_params),
            jax.random.fold_in(k_sample, s.step),
            histogram,
            config.train.num_progress_samples,
            batch_size=min(config.sample.batch_size, config.train.num_progress_samples),
            **sample_kw,
        )
        st = stability(samples["positions"], samples["atomic_numbers"], samples["mask"])
        return {f"progress/{k}": float(v) for k, v in st.items()}

    with MetricWriter(workdir) if is_main else contextlib.nullcontext() as writer:
        t_train = time.time()
        state, last = fit(
            state,
            step_fn,
            train_batches(train, config, start_step),
            k_train,
            num_steps=config.num_train_steps,
            writer=writer,
            checkpointer=checkpointer,
            log_every=config.train.log_every,
            checkpoint_every=config.train.checkpoint_every,
            eval_every=config.train.eval_every,
            eval_fn=eval_fn,
            sample_every=config.train.sample_every,
            sample_fn=sample_fn,
            progress=config.train.progress_bar,
        )
        train_time = time.time() - t_train
        checkpointer.close()

        metrics: dict[str, Any] = {
            "params": num_params,
            "steps": int(jax.device_get(state.step)),
            "train_time_s": train_time,
            "resumed_from_step": start_step,
        }
        metrics.update({k: v for k, v in last.items() if k.startswith(("train/", "val/"))})

        t_eval = time.time()
        samples = sample_molecules_batched(
            graphdef,
            sharding.host_local(state.ema_params),
            k_sample,
            histogram,
            config.evaluate.num_samples,
            batch_size=min(config.sample.batch_size, config.evaluate.num_samples),
            progress=config.train.progress_bar,
            **sample_kw,
        )
        metrics["sample_time_s"] = time.time() - t_eval
        metrics["num_samples"] = config.evaluate.num_samples
        metrics.update(sample_metrics(samples))
        if config.evaluate.write_files and is_main:
            paths = save_samples(os.path.join(workdir, "samples"), samples)
            metrics["samples_png"] = paths.get("png", "")
        if writer is not None:
            writer.write_scalars(
                metrics["steps"],
                {
                    k: v
                    for k, v in metrics.items()
                    if isinstance(v, float) and not k.startswith("train/")
                },
            )
    metrics["wall_time_s"] = time.time() - t_start
    return metrics
