"""Small files in the published dataset formats, for tests, demos and notebooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from symdiff_jax.data.geom_drugs import GEOM_ATOM_TYPES


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
