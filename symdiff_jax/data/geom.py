"""The safe GEOM cache: the published pickles converted once, read without unpickling.

`convert_to_cache` reads the GEOM release (the pickles of `symdiff_jax.data.geom_pickles`,
from paths the caller passes) and writes, per split, an SDF with one entry per conformer and
an npz index; `load_cached` reads them back with `allow_pickle=False` in every later run.
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from symdiff_jax.data.atomic import atomic_write, read_npz, write_npz_atomic
from symdiff_jax.data.geom_pickles import (
    SPLIT_NAMES,
    WHERE_PUBLISHED,
    add_conformers,
    load_geom_split,
    load_test_mols,
    load_test_smiles,
    molecule_from_dict,
    split_name,
)

__all__ = ["CACHE_FORMAT", "convert_to_cache", "load_cached"]

#: Cache format version written into every cache index.
CACHE_FORMAT: int = 1


def _write_records(
    records: Sequence[dict[str, Any]], skipped: dict[str, int], base: Path, extra=None
) -> None:
    """Writes `<base>.sdf` (one entry per conformer) and `<base>.npz` (the index)."""
    smiles, num_atoms, num_confs, weights, raw, energies, sources = [], [], [], [], [], [], []
    chiral = []
    kept = Counter(skipped)

    def write_sdf(tmp: str) -> None:
        writer = Chem.SDWriter(tmp)
        try:
            for rec in records:
                mol = Chem.Mol(rec["mol"])
                try:
                    Chem.MolToMolBlock(mol)  # kekulisation check before writing anything
                except Exception:  # noqa: BLE001 - RDKit raises several types
                    kept["sdf_write_failed"] += 1
                    continue
                confs = list(mol.GetConformers())
                for k, conf in enumerate(confs):
                    mol.SetProp("_Name", rec["smiles"])
                    mol.SetProp("geom_smiles", rec["smiles"])
                    mol.SetIntProp("geom_molecule", len(smiles))
                    mol.SetIntProp("geom_conformer", k)
                    mol.SetDoubleProp("boltzmannweight", float(rec["boltzmann_weights"][k]))
                    mol.SetDoubleProp("totalenergy", float(rec["energies"][k]))
                    writer.write(mol, confId=conf.GetId())
                smiles.append(rec["smiles"])
                num_atoms.append(rec["num_atoms"])
                num_confs.append(len(confs))
                weights.append(np.asarray(rec["weights"], np.float64))
                raw.append(np.asarray(rec["boltzmann_weights"], np.float64))
                energies.append(np.asarray(rec["energies"], np.float64))
                sources.append(Path(str(rec.get("source", ""))).name)
                chiral.append(np.array([int(a.GetChiralTag()) for a in mol.GetAtoms()], np.int8))
        finally:
            writer.close()

    atomic_write(base.with_suffix(".sdf"), write_sdf)
    counts = np.array(num_confs, np.int64)
    reasons = sorted(kept)
    index = {
        "cache_format": np.array(CACHE_FORMAT),
        "smiles": np.array(smiles, dtype=str),
        "num_atoms": np.array(num_atoms, np.int64),
        "num_conformers": counts,
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "weights": np.concatenate(weights) if weights else np.zeros(0),
        "boltzmann_weights": np.concatenate(raw) if raw else np.zeros(0),
        "energies": np.concatenate(energies) if energies else np.zeros(0),
        "source": np.array(sources, dtype=str),
        "chiral_tags": np.concatenate(chiral) if chiral else np.zeros(0, np.int8),
        "skip_reasons": np.array(reasons, dtype=str),
        "skip_counts": np.array([kept[r] for r in reasons], np.int64),
    }
    if extra:
        index.update(extra)
    write_npz_atomic(base.with_suffix(".npz"), index)


def convert_to_cache(
    data_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    splits: Sequence[str] = SPLIT_NAMES,
    dataset: str | None = None,
    pickle_dir: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    test_mols: str | os.PathLike | None = None,
    test_smiles: str | os.PathLike | None = None,
    max_molecules: int | None = None,
    filter_reacted: bool = True,
    max_conformers: int | None = None,
    progress: bool = False,
) -> Path:
    """Converts the published GEOM pickles once into a cache that needs no unpickling.

    Security: this is the one step that unpickles (the molecule pickles, the split file and
    `test_mols.pkl`), so it runs code from those files: only run it on data you trust.

    Writes, under `cache_dir`, for each split `<split>.sdf` (one SDF entry per conformer,
    hydrogens included, properties `geom_smiles`, `geom_molecule`, `geom_conformer`,
    `boltzmannweight`, `totalenergy`) and `<split>.npz` (index: smiles, num_atoms,
    num_conformers, offsets, weights, boltzmann_weights, energies, source, skip_reasons,
    skip_counts). When `test_mols` names a `test_mols.pkl`, also `test_mols.sdf` /
    `test_mols.npz`, whose index adds `num_conformers_csv` and `corrected_smiles` from
    `test_smiles` when given (-1 / "" otherwise). Only the split file, the split's pickles
    and the files named here are unpickled (each listed in the log before it is read).
    Files are written atomically; existing ones are replaced.

    Args:
      data_dir, dataset, pickle_dir, split_file, max_molecules, filter_reacted,
        max_conformers, progress: as `load_geom_split`.
      cache_dir: output folder.
      splits: which splits to convert (an empty tuple for test_mols only).
      test_mols, test_smiles: the reference test set files; None: not read.

    Returns:
      `Path(cache_dir)`.
    """
    data_dir = Path(data_dir).expanduser()
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    for split in splits:
        name = split_name(split)
        loaded = load_geom_split(
            data_dir,
            name,
            dataset=dataset,
            pickle_dir=pickle_dir,
            split_file=split_file,
            max_molecules=max_molecules,
            filter_reacted=filter_reacted,
            max_conformers=max_conformers,
            progress=progress,
        )
        _write_records(loaded["molecules"], loaded["skipped"], cache / name)
    if test_mols is not None:
        tm = Path(test_mols).expanduser()
        table = load_test_smiles(Path(test_smiles).expanduser()) if test_smiles else None
        mols = load_test_mols(tm)
        keys = list(mols)
        if max_molecules is not None:
            keys = keys[: int(max_molecules)]
        records, skipped = [], Counter()
        for key in keys:
            record, reason = molecule_from_dict(
                {"smiles": key, "conformers": [{"rd_mol": m} for m in mols[key]]},
                str(tm),
                filter_reacted=False,
            )
            if record is None:
                skipped[reason] += 1
                continue
            records.append(record)
        lookup = {}
        if table is not None:
            for s, c, cs in zip(
                table["smiles"], table["num_conformers"], table["corrected_smiles"], strict=True
            ):
                lookup[str(s)] = (int(c), str(cs))
        extra = {
            "num_conformers_csv": np.array(
                [lookup.get(r["smiles"], (-1, ""))[0] for r in records], np.int64
            ),
            "corrected_smiles": np.array(
                [lookup.get(r["smiles"], (-1, ""))[1] for r in records], dtype=str
            ),
        }
        _write_records(records, dict(skipped), cache / "test_mols", extra)
    return cache


def load_cached(cache_dir: str | os.PathLike, split: str) -> dict[str, Any]:
    """Reads a split written by `convert_to_cache` (SDF + npz; nothing is unpickled).

    Args:
      cache_dir: the folder given to `convert_to_cache`.
      split: "train", "val" ("valid"), "test" or "test_mols".

    Returns:
      `{"molecules": [record, ...], "skipped": {reason: count}}` with records as
      `load_geom_molecule` returns them ("mol" carries all conformers; "source" is the
      original pickle's file name). For "test_mols" each record also has
      "num_conformers_csv" and "corrected_smiles" (from test_smiles.csv, -1 / "" if absent).

    Raises:
      FileNotFoundError: the cache files are missing (run `convert_to_cache` first).
      ValueError: an index file that cannot be read or lacks arrays (named by path), a
        cache written by another format version, or one whose SDF and index disagree.
    """
    name = "test_mols" if split == "test_mols" else split_name(split)
    base = Path(cache_dir).expanduser() / name
    sdf, npz = base.with_suffix(".sdf"), base.with_suffix(".npz")
    if not (sdf.is_file() and npz.is_file()):
        raise FileNotFoundError(
            f"GEOM cache for split {name!r} not found (looked for {sdf} and {npz}). Create it "
            "once from the published files with symdiff_jax.data.geom.convert_to_cache("
            "data_dir, cache_dir). " + WHERE_PUBLISHED
        )
    try:
        index = read_npz(npz)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"The GEOM cache {npz} cannot be read ({type(err).__name__}: {err}); run "
            "convert_to_cache again."
        ) from err
    needed = ("offsets", "num_atoms", "smiles", "chiral_tags", "boltzmann_weights", "weights")
    missing = [k for k in (*needed, "energies") if k not in index]
    if missing:
        raise ValueError(
            f"The GEOM cache {npz} lacks the arrays {missing}; run convert_to_cache again."
        )
    if int(index.get("cache_format", -1)) != CACHE_FORMAT:
        raise ValueError(
            f"{npz} was written by cache format {int(index.get('cache_format', -1))}, this "
            f"code reads format {CACHE_FORMAT}; run convert_to_cache again."
        )
    supplier = Chem.SDMolSupplier(str(sdf), sanitize=False, removeHs=False)
    offsets = index["offsets"]
    total = int(offsets[-1])
    if len(supplier) != total:
        raise ValueError(
            f"{sdf} holds {len(supplier)} conformers but {npz} indexes {total}; the cache is "
            "inconsistent, run convert_to_cache again."
        )
    molecules = []
    atom_offsets = np.concatenate([[0], np.cumsum(index["num_atoms"])])
    for m, smiles in enumerate(index["smiles"]):
        start, stop = int(offsets[m]), int(offsets[m + 1])
        entries = [supplier[k] for k in range(start, stop)]
        if any(e is None for e in entries):
            raise ValueError(f"{sdf}: an entry of molecule {m} ({smiles}) could not be read.")
        graph = Chem.Mol(entries[0])
        try:
            Chem.SanitizeMol(graph)
        except Exception:  # noqa: BLE001 - keep what the file holds
            graph.UpdatePropertyCache(strict=False)
        graph.RemoveAllConformers()
        positions = np.stack([e.GetConformer().GetPositions() for e in entries])
        add_conformers(graph, positions)
        for prop in list(graph.GetPropNames()):
            graph.ClearProp(prop)
        # Chiral tags as the original Mol had them (the SDF parser would not restore
        # unassigned centres the same way).
        atom0 = int(atom_offsets[m])
        for atom, tag in zip(
            graph.GetAtoms(), index["chiral_tags"][atom0 : atom0 + graph.GetNumAtoms()], strict=True
        ):
            atom.SetChiralTag(Chem.ChiralType.values[int(tag)])
        record = {
            "smiles": str(smiles),
            "mol": graph,
            "positions": positions,
            "boltzmann_weights": index["boltzmann_weights"][start:stop],
            "weights": index["weights"][start:stop],
            "energies": index["energies"][start:stop],
            "atomic_numbers": np.array([a.GetAtomicNum() for a in graph.GetAtoms()], np.int32),
            "num_atoms": int(index["num_atoms"][m]),
            "num_dropped": 0,
            "source": str(index["source"][m]),
        }
        if "corrected_smiles" in index:
            record["num_conformers_csv"] = int(index["num_conformers_csv"][m])
            record["corrected_smiles"] = str(index["corrected_smiles"][m])
        molecules.append(record)
    skipped = {
        str(r): int(c) for r, c in zip(index["skip_reasons"], index["skip_counts"], strict=True)
    }
    return {"molecules": molecules, "skipped": skipped}
