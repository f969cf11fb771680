"""Generating conformers for molecular graphs with a trained flow or diffusion model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.common.state import compiled_with_model, make_schedule
from symdiff_jax.conformers.graphs import ConformerGraph
from symdiff_jax.conformers.sampling import sample_diffusion_conformers, sample_flow_conformers


def sample_batch(
    net: nnx.Module,
    key: jax.Array,
    atom_features: jax.Array,
    bond_types: jax.Array,
    mask: jax.Array,
    generator: str,
    num_steps: int,
    prior: str,
    prediction: str,
    schedule,
) -> jax.Array:
    """Conformers `[B, N, 3]` of one batch of graphs, by the flow or the diffusion sampler."""
    graph = ConformerGraph(atom_features, bond_types)
    if generator == "flow":
        return sample_flow_conformers(net, key, graph, mask, num_steps=num_steps, prior=prior)
    return sample_diffusion_conformers(
        net, key, graph, mask, schedule, num_steps=num_steps, prediction=prediction
    )


def compiled_sampler(graphdef, config, num_steps: int | None = None):
    """`jit((params, key, atom_features, bond_types, mask) -> x)`, compiled once per setting."""
    schedule = make_schedule(config.diffusion) if config.generator == "diffusion" else None
    return compiled_with_model(
        sample_batch,
        graphdef,
        config.generator,
        int(num_steps or config.sample.num_steps),
        config.diffusion.prior,
        config.diffusion.prediction,
        schedule,
    )


def parity_correct(
    x: np.ndarray, table: dict[str, np.ndarray], molecules: np.ndarray
) -> np.ndarray:
    """Mirrors each generated conformer whose tagged stereocentres mostly disagree.

    An O(3)-equivariant generator cannot tell enantiomers apart, so after sampling a
    conformer is reflected when the majority of its molecule's chirality tags
    (`chiral_tags`, +1 CCW / -1 CW) disagree with the signed volumes at those centres
    (`symdiff_jax.conformers.chirality`). Molecules without tags are kept.
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
    fn = compiled_sampler(graphdef, config, num_steps)
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
