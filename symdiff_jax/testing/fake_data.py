"""Small files in the published dataset formats, for tests, demos and notebooks."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from symdiff_jax.data.features import featurise
from symdiff_jax.data.geom_drugs import GEOM_ATOM_TYPES
from symdiff_jax.groups import remove_com


def write_fake_geom_drugs(
    directory, *, num_molecules=9, conformations=3, seed=0, sizes=(4, 12), id_offset=0
):
    """Writes a small random GEOM-Drugs build in EDM's format; returns its ground truth.

    Mirrors `build_geom_dataset.extract_conformers`: for each SMILES keep the (up to)
    `conformations` lowest-energy conformers, give every kept conformer a fresh id, stack
    rows `[id, Z, x, y, z]` as float64; write the per-conformer atom counts and one SMILES
    per molecule. Molecules have 1..conformations+1 conformers before the cut. Ids start
    at `id_offset` (EDM's start at 0; the loader must only look at where they change).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    rows, counts, smiles, truth = [], [], [], []
    conf_id = 0
    for mol in range(num_molecules):
        n = rng.randint(sizes[0], sizes[1] + 1)
        z = rng.choice(GEOM_ATOM_TYPES, size=n)
        z[0] = 6
        energies = rng.randn(rng.randint(1, conformations + 2))
        for k in np.argsort(energies)[:conformations]:
            xyz = rng.randn(n, 3) * 2.0 + 0.1 * k
            cid = conf_id + id_offset
            rows.append(np.hstack([np.full((n, 1), float(cid)), z[:, None], xyz]))
            counts.append(n)
            truth.append({"id": cid, "z": z.copy(), "xyz": xyz})
            conf_id += 1
        smiles.append("C" * (mol + 1))
    table = np.vstack(rows).astype(float)
    np.save(directory / f"geom_drugs_{conformations}.npy", table)
    np.save(directory / f"geom_drugs_n_{conformations}.npy", np.array(counts))
    (directory / "geom_drugs_smiles.txt").write_text("".join(s + "\n" for s in smiles))
    perm = np.random.RandomState(seed + 1).permutation(conf_id).astype("int32")
    np.save(directory / "geom_permutation.npy", perm)
    return {"conformers": truth, "perm": perm, "table": table, "smiles": smiles}


def random_molecule(seed: int, mask: np.ndarray):
    """One random padded QM9-like molecule: CoM-free positions, scaled features, charges.

    Args:
      seed: numpy seed.
      mask: `[N]` real atoms (padding may be interleaved).

    Returns:
      `(x [N, 3] float32, h [N, 6], charges [N] int32)`, zero on padded rows.
    """
    rng = np.random.default_rng(seed)
    m = jnp.asarray(mask)
    x = remove_com(jnp.asarray(rng.normal(size=(len(mask), 3)) * 1.3, jnp.float32) * m[:, None], m)
    charges = jnp.asarray(rng.choice([1, 6, 7, 8, 9], size=len(mask)) * (mask > 0), jnp.int32)
    return x, featurise(charges, m), charges


def random_molecule_batch(seeds, masks) -> dict:
    """A `batch_iterator`-style batch of `random_molecule`s, one per (seed, mask) pair."""
    xs, hs, qs = zip(
        *(random_molecule(s, m) for s, m in zip(seeds, masks, strict=True)), strict=True
    )
    return {
        "positions": jnp.stack(xs),
        "h": jnp.stack(hs),
        "charges": jnp.stack(qs),
        "mask": jnp.asarray(np.stack(masks)),
    }
