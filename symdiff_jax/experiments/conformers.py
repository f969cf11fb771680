"""Conformer generation with the symmetrised target (paper 000, section 4.2): train and score.

`run(config, workdir)` trains the graph-conditioned generator of `config`
(`symdiff_jax.experiments.conformer_config`) with checkpoints and exact resume (or for a
training-time budget), then generates `per_reference` conformers per reference conformer
for the test molecules with the EMA parameters and scores them with COV-R/P and AMR-R/P
(`symdiff_jax.metrics.conformers`), writing the generated conformers as SDF. With
`evaluate.measure_overhead` it also times loss + gradient with the data and with the
symmetrised target on the same batch (the training-time overhead of the target).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from symdiff_jax.conformers.datasets import (
    conformer_batch,
    load_conformer_data,
    mols_with_positions,
    reference_mols,
    train_batches,
)
from symdiff_jax.conformers.objectives import diffusion_losses, flow_matching_losses
from symdiff_jax.conformers.sampling import sample_diffusion_conformers, sample_flow_conformers
from symdiff_jax.diffusion import get_schedule, polynomial_schedule
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.metrics.conformers import evaluate_molecules, summarise
from symdiff_jax.models.conformer_nets import ConformerGraph
from symdiff_jax.models.factory import build_conformer_net
from symdiff_jax.train import Checkpointer, MetricWriter, sharding
from symdiff_jax.train.loop import fit
from symdiff_jax.train.optim import make_optimizer
from symdiff_jax.train.state import count_parameters, init_train_state, split_model
from symdiff_jax.train.step import make_eval_step

DEVICE_KEYS = (
    "positions",
    "atom_features",
    "bond_types",
    "mask",
    "automorphisms",
    "automorphism_mask",
    "bank",
    "bank_log_weights",
)


# ----------------------------------------------------------------------------- pieces


def make_schedule(config) -> Schedule:
    """The diffusion schedule (`objective.schedule`, EDM's `polynomial_2` by default)."""
    o = config.objective
    if o.schedule.startswith("polynomial_"):
        power = float(o.schedule.split("_", 1)[1])
        return polynomial_schedule(o.schedule_steps, power=power)
    return get_schedule(o.schedule)


def num_atom_features(table: dict[str, np.ndarray]) -> int:
    return int(table["atom_features"].shape[-1])


def make_loss_fn(config, x_target: str | None = None):
    """`(net, batch, key) -> {"loss": [B], ...}` of the configured generator and target."""
    o = config.objective
    x_target = x_target or o.x_target
    if config.generator == "flow":

        def loss_fn(net, batch, key):
            return flow_matching_losses(
                net,
                key,
                batch,
                prior=o.prior,
                path_sigma=o.path_sigma,
                x_target=x_target,
                group=o.group,
                velocity_form=o.velocity_form,
                t_range=(o.t_min, o.t_max),
            )

        return loss_fn
    if config.generator != "diffusion":
        raise ValueError(
            f"config.generator must be 'flow' or 'diffusion'; got {config.generator!r}."
        )
    schedule = make_schedule(config)

    def loss_fn(net, batch, key):
        return diffusion_losses(
            net, key, batch, schedule, x_target=x_target, group=o.group, prediction=o.prediction
        )

    return loss_fn


def build_net(config, num_features: int, key: jax.Array) -> nnx.Module:
    return build_conformer_net(config.model, num_features, key)


def init_params(config, num_features: int, key: jax.Array):
    """`(graphdef, params)`, the parameters made in one compiled call."""
    graphdef, _ = split_model(nnx.eval_shape(lambda: build_net(config, num_features, key)))
    params = jax.jit(lambda k: split_model(build_net(config, num_features, k))[1])(key)
    return graphdef, params


def make_train_optimizer(config):
    o = config.optim
    return make_optimizer(
        o.learning_rate,
        weight_decay=o.weight_decay,
        amsgrad=o.amsgrad,
        clip_norm=o.clip_norm or None,
        warmup_steps=o.warmup_steps,
    )


def abstract_state(config, num_features: int):
    """`(graphdef, TrainState of ShapeDtypeStructs)` for restoring checkpoints."""
    model = nnx.eval_shape(lambda: build_net(config, num_features, jax.random.key(config.seed)))
    graphdef, params = split_model(model)
    optimizer = make_train_optimizer(config)
    return graphdef, jax.eval_shape(lambda p: init_train_state(p, optimizer), params)


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, "checkpoints")


def to_device(batch: dict) -> dict[str, jax.Array]:
    return {k: jnp.asarray(batch[k]) for k in DEVICE_KEYS}


def fixed_batches(table, config, count: int) -> list[dict[str, jax.Array]]:
    """Up to `count` conformer rows of a split in order, as full batches."""
    rows = np.arange(min(count, len(table["positions"])))
    size = min(config.batch_size, len(rows))
    return [
        to_device(
            conformer_batch(
                table,
                rows[i : i + size],
                automorphism_width=config.data.max_automorphisms,
                bank_size=config.data.bank_size,
            )
        )
        for i in range(0, len(rows) - size + 1, size)
    ]


def mean_loss(eval_step, params, batches, key) -> float:
    """Mean per-example loss over fixed batches with fixed keys."""
    values = [
        np.asarray(jax.device_get(eval_step(params, b, jax.random.fold_in(key, i))["loss"]))
        for i, b in enumerate(batches)
    ]
    return float(np.concatenate(values).mean())


# ----------------------------------------------------------------------------- generation


@functools.lru_cache(maxsize=8)
def _compiled_sampler(graphdef, config_key: tuple):
    generator, num_steps, prior, prediction, schedule = config_key

    def sample(params, key, atom_features, bond_types, mask):
        net = nnx.merge(graphdef, params)
        graph = ConformerGraph(atom_features, bond_types)
        if generator == "flow":
            return sample_flow_conformers(net, key, graph, mask, num_steps=num_steps, prior=prior)
        return sample_diffusion_conformers(
            net, key, graph, mask, schedule, num_steps=num_steps, prediction=prediction
        )

    return jax.jit(sample)


def _sampler_key(config, num_steps: int | None = None) -> tuple:
    schedule = make_schedule(config) if config.generator == "diffusion" else None
    return (
        config.generator,
        int(num_steps or config.sample.num_steps),
        config.objective.prior,
        config.objective.prediction,
        schedule,
    )


def parity_correct(
    x: np.ndarray, table: dict[str, np.ndarray], molecules: np.ndarray
) -> np.ndarray:
    """Mirrors each generated conformer whose tagged stereocentres mostly disagree.

    The O(3) option of the issue: an O(3)-equivariant generator cannot tell enantiomers
    apart, so after sampling a conformer is reflected when the majority of its molecule's
    chirality tags (`chiral_tags`, +1 CCW / -1 CW) disagree with the signed volumes at
    those centres (`symdiff_jax.conformers.chirality`). Molecules without tags are kept.
    """
    from symdiff_jax.conformers import chirality

    items = [
        chirality.chiral_centres(table["chiral_tags"][m], table["bond_types"][m]) for m in molecules
    ]
    centres, neighbours, signs, mask = chirality.pad_chiral_centres(items)
    return np.asarray(chirality.parity_correct(x, centres, neighbours, signs, mask))


def generate_conformers(
    graphdef,
    params,
    key: jax.Array,
    table: dict[str, np.ndarray],
    molecules: np.ndarray,
    config,
    *,
    num_steps: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Conformers `[len(molecules), N, 3]` (numpy, centred) for the given molecule indices.

    Batches of `config.sample.batch_size` (the last one padded with repeats, so one
    compiled shape), key `fold_in(key, batch index)`; parity-corrected when the model is
    O(3) and `sample.parity_correction`.
    """
    fn = _compiled_sampler(graphdef, _sampler_key(config, num_steps))
    size = config.sample.batch_size
    molecules = np.asarray(molecules)
    n_max = table["positions"].shape[1]
    out = []
    starts = range(0, len(molecules), size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generate", dynamic_ncols=True)
    for b, start in enumerate(starts):
        chunk = molecules[start : start + size]
        padded = np.concatenate([chunk, np.resize(chunk, size - len(chunk))])
        mask = (np.arange(n_max)[None] < table["num_atoms"][padded][:, None]).astype(np.float32)
        x = fn(
            params,
            jax.random.fold_in(key, b),
            jnp.asarray(table["atom_features"][padded]),
            jnp.asarray(table["bond_types"][padded].astype(np.int32)),
            jnp.asarray(mask),
        )
        out.append(np.asarray(jax.device_get(x))[: len(chunk)])
    x = np.concatenate(out) if out else np.zeros((0, n_max, 3), np.float32)
    equivariant_o3 = config.model.kind == "egnn" or config.model.group == "O3"
    if config.sample.parity_correction and equivariant_o3 and len(x):
        x = parity_correct(x, table, molecules)
    return x


def evaluation_plan(table, num_molecules: int, per_reference: int) -> tuple[np.ndarray, np.ndarray]:
    """`(molecules scored [M], molecule of each generated conformer [sum 2 C_m])`."""
    total = len(table["num_atoms"])
    chosen = np.arange(min(num_molecules, total) if num_molecules else total)
    counts = np.diff(table["conformer_offsets"])[chosen] * per_reference
    return chosen, np.repeat(chosen, counts)


def score_conformers(
    table,
    chosen: np.ndarray,
    generated: np.ndarray,
    requests: np.ndarray,
    config,
    *,
    progress=False,
) -> tuple[list[dict[str, float]], list[tuple[list, list]]]:
    """Per-molecule COV/AMR of generated conformers against the table's references."""
    pairs = []
    for m in chosen:
        gen = mols_with_positions(table, int(m), generated[requests == m])
        pairs.append((gen, reference_mols(table, int(m))))
    workers = config.evaluate.num_workers
    per_molecule = evaluate_molecules(
        pairs,
        thresholds=tuple(config.evaluate.thresholds),
        num_workers=None if workers < 0 else workers,
        progress=progress,
    )
    return per_molecule, pairs


def write_sdf(path: str, pairs) -> None:
    from rdkit import Chem

    with Chem.SDWriter(path) as writer:
        for k, (gen, _) in enumerate(pairs):
            for c, mol in enumerate(gen):
                mol.SetProp("_Name", f"molecule_{k}_conformer_{c}")
                writer.write(mol)


# ----------------------------------------------------------------------------- overhead


def measure_target_overhead(config, graphdef, params, batch, key, repeats: int = 20) -> dict:
    """Median time of jitted loss + gradient with the data and the symmetrised target.

    Same batch, same parameters, same keys, the two compiled steps called alternately (so a
    slow spell of a shared machine hits both); the ratio is the training-time overhead of
    the exact O(3) x Aut(G) target (paper 000 reports 0.9-2.9% for its Monte Carlo one).
    Also the target alone (`bench/target_ms`).
    """
    from symdiff_jax.conformers.objectives import batch_symmetrised_target

    fns = {}
    for target in ("data", "symmetrised"):
        loss_fn = make_loss_fn(config, target)

        def objective(p, b, k, loss_fn=loss_fn):
            return jnp.mean(loss_fn(nnx.merge(graphdef, p), b, k)["loss"])

        fns[target] = jax.jit(jax.value_and_grad(objective))
    x_t = batch["positions"] * 0.7
    fns["target"] = jax.jit(
        lambda b, x: batch_symmetrised_target(b, x, 0.7, 0.5, config.objective.group)
    )

    def call(name, i):
        if name == "target":
            return fns[name](batch, x_t)
        return fns[name](params, batch, jax.random.fold_in(key, i))

    times: dict[str, list[float]] = {name: [] for name in fns}
    for name in fns:
        jax.block_until_ready(call(name, 0))
    for i in range(repeats):
        for name in fns:
            t0 = time.perf_counter()
            jax.block_until_ready(call(name, i))
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {
        "bench/grad_step_ms_data": 1e3 * med["data"],
        "bench/grad_step_ms_symmetrised": 1e3 * med["symmetrised"],
        "bench/target_ms": 1e3 * med["target"],
        "bench/target_overhead": med["symmetrised"] / med["data"] - 1.0,
    }


# ----------------------------------------------------------------------------- the run


def run(config, workdir: str) -> dict[str, Any]:
    """Trains, generates and scores one conformer experiment; returns the flat metrics."""
    t_start = time.time()
    key = jax.random.key(config.seed)
    k_init, k_train, k_eval, k_sample = jax.random.split(key, 4)
    progress = config.train.progress_bar

    train = load_conformer_data(config.data, "train", progress=progress)
    valid = load_conformer_data(config.data, "val", progress=progress)
    features = num_atom_features(train)

    graphdef, params = init_params(config, features, k_init)
    optimizer = make_train_optimizer(config)
    state = init_train_state(params, optimizer)
    num_params = count_parameters(state.params)
    logging.info("%s: %d parameters", config.variant, num_params)
    mesh = sharding.make_mesh()
    shardings = sharding.state_shardings(state, mesh)
    state = sharding.place_state(state, shardings)
    k_train = sharding.replicate(k_train, mesh)
    is_main = sharding.is_main_process()

    checkpointer = Checkpointer(
        checkpoint_dir(workdir), max_to_keep=config.train.keep_checkpoints, best_metric="val/loss"
    )
    if checkpointer.latest_step() is not None:
        state = checkpointer.restore(state)
        logging.info("Resumed from step %d", int(state.step))
    start_step = int(jax.device_get(state.step))

    loss_fn = make_loss_fn(config)
    step_fn = sharding.make_sharded_train_step(
        graphdef,
        loss_fn,
        optimizer,
        mesh,
        shardings,
        ema_decay=config.optim.ema_decay,
        ema_warmup=config.optim.ema_warmup,
    )
    # Validation always scores the data target, so runs with either target compare.
    eval_step = make_eval_step(graphdef, make_loss_fn(config, "data"))
    valid_batches = fixed_batches(valid, config, config.data.max_valid or len(valid["positions"]))
    batches = (
        sharding.shard_batch({k: b[k] for k in DEVICE_KEYS}, mesh)
        for b in train_batches(
            train,
            config.batch_size,
            seed=config.seed,
            start_step=start_step,
            automorphism_width=config.data.max_automorphisms,
            bank_size=config.data.bank_size,
        )
    )

    def eval_fn(s) -> dict[str, float]:
        params = sharding.host_local(s.ema_params)
        return {"val/loss": mean_loss(eval_step, params, valid_batches, k_eval)}

    with MetricWriter(workdir) if is_main else contextlib.nullcontext() as writer:
        t_train = time.time()
        state, last = fit(
            state,
            step_fn,
            batches,
            k_train,
            num_steps=config.num_train_steps,
            writer=writer,
            checkpointer=checkpointer,
            log_every=config.train.log_every,
            checkpoint_every=config.train.checkpoint_every,
            eval_every=config.train.eval_every,
            eval_fn=eval_fn,
            progress=progress,
            time_budget_s=config.train.time_budget_s or None,
        )
        train_time = time.time() - t_train
        checkpointer.close()
        metrics: dict[str, Any] = {
            "params": num_params,
            "steps": int(jax.device_get(state.step)),
            "train_time_s": train_time,
            "resumed_from_step": start_step,
            "train_conformers": len(train["positions"]),
            "train_molecules": len(train["num_atoms"]),
            # Molecules whose automorphism group has more rows than a batch keeps (their
            # target averages over a subset: the identity and the first K - 1).
            "train_molecules_group_cut": int(
                (
                    (np.diff(train["aut_offsets"]) > config.data.max_automorphisms)
                    | train["automorphisms_capped"]
                ).sum()
            ),
        }
        metrics.update({k: v for k, v in last.items() if k.startswith(("train/", "val/"))})

        test = load_conformer_data(config.data, "test", progress=progress)
        chosen, requests = evaluation_plan(
            test, config.evaluate.num_molecules, config.evaluate.per_reference
        )
        t_gen = time.time()
        ema = sharding.host_local(state.ema_params)
        generated = generate_conformers(
            graphdef, ema, k_sample, test, requests, config, progress=progress
        )
        metrics["generate_time_s"] = time.time() - t_gen
        metrics["generated_conformers"] = len(requests)
        metrics["test_molecules"] = len(chosen)
        metrics["test_references"] = int(np.diff(test["conformer_offsets"])[chosen].sum())
        per_molecule, pairs = score_conformers(
            test, chosen, generated, requests, config, progress=progress
        )
        metrics.update(summarise(per_molecule))
        if config.evaluate.write_files and is_main:
            os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
            write_sdf(os.path.join(workdir, "samples", "generated.sdf"), pairs)
        if config.evaluate.measure_overhead:
            batch = to_device(
                next(
                    itertools.islice(
                        train_batches(
                            train,
                            config.batch_size,
                            seed=config.seed,
                            automorphism_width=config.data.max_automorphisms,
                            bank_size=config.data.bank_size,
                        ),
                        1,
                    )
                )
            )
            metrics.update(measure_target_overhead(config, graphdef, ema, batch, k_eval))
        if writer is not None:
            writer.write_scalars(
                metrics["steps"],
                {k: v for k, v in metrics.items() if isinstance(v, float) and "/" in k},
            )
    metrics["wall_time_s"] = time.time() - t_start
    return metrics
