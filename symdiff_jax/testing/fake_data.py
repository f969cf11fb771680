"""Fake data for tests, demos and notebooks: small files in the published dataset formats
(GEOM-Drugs in EDM's layout, a GEOM release with ETKDG conformers) and random padded
molecules."""

from __future__ import annotations

import csv
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from symdiff_jax.data.features import featurise
from symdiff_jax.data.geom_drugs import GEOM_ATOM_TYPES
from symdiff_jax.data.geom_pickles import SPLIT_NAMES
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


def etkdg_conformer(mol: Any, seed: int) -> Any:
    """A copy of the RDKit `mol` (hydrogens explicit) with one ETKDGv3 conformer from `seed`.

    `mol` may also be a SMILES string (hydrogens are then added).

    Raises:
      RuntimeError: ETKDG could not embed the molecule with this seed.
    """
    if isinstance(mol, str):
        mol = Chem.AddHs(Chem.MolFromSmiles(mol))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    out = Chem.Mol(mol)
    if AllChem.EmbedMolecule(out, params) != 0:
        raise RuntimeError(
            f"ETKDG failed to embed {Chem.MolToSmiles(mol)} (seed {seed}); try another seed."
        )
    return out


def geom_molecule_dict(smiles: str, num_conformers: int = 3, seed: int = 0, extra_mols=()) -> dict:
    """A GEOM `rdkit_folder` dict: ETKDG conformers (seeds `seed + 17 k`) plus `extra_mols`,
    with increasing Boltzmann weights and energies `-10 - k`."""
    mols = [etkdg_conformer(smiles, seed + 17 * k) for k in range(num_conformers)]
    mols += list(extra_mols)
    weights = np.arange(1, len(mols) + 1, dtype=float)
    weights /= weights.sum()
    return {
        "smiles": smiles,
        "totalconfs": len(mols),
        "conformers": [
            {"rd_mol": m, "boltzmannweight": float(w), "totalenergy": -10.0 - k, "geom_id": k}
            for k, (m, w) in enumerate(zip(mols, weights, strict=True))
        ],
    }


def write_pickle(obj: Any, path: str | os.PathLike) -> None:
    """Pickles `obj` to `path` (parents created), as the published GEOM files are stored."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_example_geom(
    directory: str | os.PathLike,
    smiles: Sequence[str] = ("CCO", "CC(=O)O", "C[C@@H](O)CC", "CC(C)C", "OCC#N", "c1ccoc1"),
    *,
    num_conformers: int = 3,
    dataset: str = "qm9",
    split_sizes: Sequence[int] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Writes a tiny GEOM release in the published layout, with ETKDG conformers.

    Layout: `<directory>/rdkit_folder/<dataset>/<smiles>.pickle` (GEOM dicts),
    `<directory>/<DATASET>/split.npy` (object array of three index arrays into the sorted
    pickles), `<DATASET>/test_smiles.csv` and `<DATASET>/test_mols.pkl` (the test split's
    molecules, their conformers as one-conformer Mols). Conformers are RDKit ETKDGv3
    embeddings (random seed `seed + k`) with made-up energies and Boltzmann weights.

    Args:
      directory: where to write.
      smiles: the molecules (file names use the SMILES with "/" replaced by "_").
      num_conformers: conformers per molecule.
      dataset: "qm9" or "drugs" (sub-folder names).
      split_sizes: (train, val, test) molecule counts; default all but two in train, one
        in val, one in test.
      seed: embedding seed.

    Returns:
      `{"data_dir": <directory>/<DATASET>, "pickle_dir": ..., "files": [sorted pickle
      paths], "split": {"train", "val", "test"} indices, "smiles": list}`.
    """
    root = Path(directory).expanduser()
    folder = root / "rdkit_folder" / dataset
    data_dir = root / dataset.upper()
    folder.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    entries = {}
    for s in smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        confs = []
        energies = []
        for k in range(num_conformers):
            confs.append(etkdg_conformer(mol, seed + 101 * k + 7))
            energies.append(-100.0 - 0.001 * k)
        e = np.array(energies)
        w = np.exp(-(e - e.min()) / 0.00095)  # kT at 298 K in Hartree
        w /= w.sum()
        entry = {
            "smiles": s,
            "charge": Chem.GetFormalCharge(mol),
            "totalconfs": num_conformers,
            "uniqueconfs": num_conformers,
            "temperature": 298.15,
            "conformers": [
                {
                    "rd_mol": m,
                    "geom_id": 1000 * len(paths) + k,
                    "totalenergy": float(e[k]),
                    "relativeenergy": float((e[k] - e.min()) * 627.5),
                    "boltzmannweight": float(w[k]),
                    "degeneracy": 1,
                }
                for k, m in enumerate(confs)
            ],
        }
        path = folder / f"{s.replace('/', '_')}.pickle"
        write_pickle(entry, path)
        paths.append(str(path))
        entries[str(path)] = entry
    files = sorted(paths)
    n = len(files)
    sizes = list(split_sizes) if split_sizes is not None else [max(n - 2, 0), 1, 1]
    if sum(sizes) > n:
        raise ValueError(f"split_sizes {sizes} ask for more than the {n} molecules.")
    perm = np.random.RandomState(seed).permutation(n)
    parts = np.split(perm, np.cumsum(sizes)[:2])[:3]
    split = {
        name: np.sort(p[: sizes[k]])
        for k, (name, p) in enumerate(zip(SPLIT_NAMES, parts, strict=True))
    }
    arr = np.empty(3, dtype=object)
    for k, name in enumerate(SPLIT_NAMES):
        arr[k] = split[name].astype(np.int64)
    np.save(data_dir / "split.npy", arr, allow_pickle=True)
    test_mols = {}
    with open(data_dir / "test_smiles.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["smiles", "n_conformers", "corrected_smiles"])
        for i in split["test"]:
            entry = entries[files[i]]
            test_mols[entry["smiles"]] = [c["rd_mol"] for c in entry["conformers"]]
            writer.writerow([entry["smiles"], len(entry["conformers"]), entry["smiles"]])
    write_pickle(test_mols, data_dir / "test_mols.pkl")
    return {
        "data_dir": data_dir,
        "pickle_dir": folder,
        "files": files,
        "split": split,
        "smiles": [entries[p]["smiles"] for p in files],
    }


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
