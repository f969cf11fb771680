"""GEOM-QM9 and GEOM-Drugs conformer ensembles: readers of the published (pickled) files.

Security: the published files are Python pickles, and loading a pickle runs code chosen by
whoever wrote the file. The functions here that read pickles (`load_geom_molecule`,
`load_geom_split`, `load_test_mols`, `convert_to_cache`, and `load_split_indices` when the
split file holds object arrays) only read paths the caller passes in, never a default or
downloaded location. Use them on files from a source you trust (the releases named below),
once: `symdiff_jax.data.geom.convert_to_cache` writes a safe cache (SDF with properties, plus an npz index read
with `allow_pickle=False`) that `load_cached` reads in every later run without unpickling.

Formats (facts from the public code; `gcorso/torsional-diffusion` README, `utils/dataset.py`,
`evaluate_confs.py`, `generate_confs.py`; `shenoynikhil/ETFlow` README and
`scripts/prepare_data.py`):

- GEOM's `rdkit_folder` (Harvard Dataverse, https://dataverse.harvard.edu/api/access/datafile/4327252,
  `rdkit_folder.tar`): one pickle per molecule, `rdkit_folder/qm9/<smiles>.pickle` and
  `rdkit_folder/drugs/<smiles>.pickle`, each a dict with `"smiles"` and `"conformers"`, a
  list of dicts with `"rd_mol"` (an RDKit Mol with hydrogens and one conformer, atoms in
  the same order for all conformers of a molecule), `"boltzmannweight"`, `"totalenergy"`
  and further fields (`"geom_id"`, `"relativeenergy"`, `"degeneracy"`, ...).
- Split file (Torsional Diffusion's data release, `data/QM9/split.npy`,
  `data/DRUGS/split.npy`; GeoMol's `data/<set>/splits/split0.npy`): three integer arrays
  (train, val, test), saved as an object array, indexing the pickle files sorted by path
  (`sorted(glob(<folder>/*.pickle))`; each split's indices are sorted before use). ETFlow's
  `prepare_data.py` indexes an unsorted directory listing instead; we follow Torsional
  Diffusion.
- `test_smiles.csv`: a header line, then rows `smiles, n_conformers, corrected_smiles`
  (Torsional Diffusion reads them positionally in `generate_confs.py` and by the column
  names `smiles` / `corrected_smiles` in `evaluate_confs.py`).
- `test_mols.pkl`: a pickled dict `smiles -> list of RDKit Mols` (one conformer each), the
  reference conformers for COV/AMR, keyed by the `smiles` column of `test_smiles.csv`.
- Cleaning (Torsional Diffusion, `featurize_mol` / `clean_confs`): a conformer is kept only
  if the non-isomeric canonical SMILES of `RemoveHs(rd_mol, sanitize=False)` equals that of
  the molecule's SMILES (others "may have reacted" during CREST); molecules whose SMILES has
  a "." are dropped; Boltzmann weights are renormalised over the kept conformers (uniform
  if that gives NaN).

Where to get them: GEOM's `rdkit_folder.tar` from the Dataverse link above; `split.npy`,
`test_smiles.csv` and `test_mols.pkl` from Torsional Diffusion's data release (the shared
Drive linked in its README, section "Training model"), laid out as ETFlow's README
("Preprocessing Data") describes: `<dir>/QM9/{split.npy, test_smiles.csv, test_mols.pkl}`
next to `<dir>/rdkit_folder/qm9/`.
"""

from __future__ import annotations

import csv
import logging
import os
import pickle
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

__all__ = [
    "SPLIT_FILES",
    "SPLIT_NAMES",
    "WHERE_PUBLISHED",
    "add_conformers",
    "load_geom_molecule",
    "load_geom_split",
    "load_split_indices",
    "load_test_mols",
    "load_test_smiles",
    "molecule_from_dict",
    "split_conformers",
    "split_name",
]

#: Split names (Torsional Diffusion's order in the split file); "valid" is an alias of "val".
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Where `load_geom_split` looks for the split file inside `data_dir`, in order.
SPLIT_FILES: tuple[str, ...] = ("split.npy", "splits/split0.npy", "split_boot0.npy")
_DATAVERSE = "https://dataverse.harvard.edu/api/access/datafile/4327252"
#: Where the published files are, for error messages.
WHERE_PUBLISHED = (
    "GEOM's per-molecule pickles are in rdkit_folder.tar on Harvard Dataverse ("
    + _DATAVERSE
    + "); split.npy, test_smiles.csv and test_mols.pkl are in Torsional Diffusion's data "
    "release (the shared Drive linked in the README of https://github.com/gcorso/"
    "torsional-diffusion, section 'Training model'). ETFlow's README "
    "(https://github.com/shenoynikhil/ETFlow, 'Preprocessing Data') shows the layout: "
    "<dir>/QM9/{split.npy,test_smiles.csv,test_mols.pkl} and <dir>/rdkit_folder/qm9/."
)


def _missing(what: str, looked: Iterable[Path | str]) -> FileNotFoundError:
    paths = ", ".join(str(p) for p in looked)
    return FileNotFoundError(f"{what} not found (looked for: {paths}). {WHERE_PUBLISHED}")


def split_name(split: str) -> str:
    """The split's name in the split file ("valid" is an alias of "val"); checks it."""
    name = "val" if split == "valid" else split
    if name not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES} (or 'valid'); got {split!r}.")
    return name


def _unpickle(path: Path) -> Any:
    """Reads a pickle from a path the caller gave (this runs code from the file)."""
    with open(path, "rb") as f:
        return pickle.load(f)  # noqa: S301 - documented: only paths the user passes


def _canonical_no_stereo(mol: Any) -> str | None:
    try:
        return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False), isomericSmiles=False)
    except Exception:  # noqa: BLE001 - RDKit raises several types; any failure = mismatch
        return None


def _graph_signature(mol: Any) -> tuple:
    atoms = tuple(a.GetAtomicNum() for a in mol.GetAtoms())
    bonds = tuple(
        sorted(
            (
                min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()),
                max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()),
            )
            for b in mol.GetBonds()
        )
    )
    return atoms, bonds


def add_conformers(mol: Any, positions: np.ndarray) -> None:
    """Adds one conformer per `positions[k] [N, 3]` (Angstrom) to `mol`, with ids 0..K-1."""
    for k, x in enumerate(positions):
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, p in enumerate(x):
            conf.SetAtomPosition(i, p.tolist())
        conf.SetId(k)
        mol.AddConformer(conf, assignId=False)


def molecule_from_dict(
    data: Any, where: str, *, filter_reacted: bool = True, max_conformers: int | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """One molecule record from a GEOM pickle dict, or (None, reason it was skipped)."""
    if not isinstance(data, dict) or "conformers" not in data or "smiles" not in data:
        raise ValueError(
            f"{where} is not a GEOM rdkit_folder pickle: expected a dict with 'smiles' and "
            f"'conformers'; got {type(data).__name__}"
            + (f" with keys {sorted(data)[:8]}" if isinstance(data, dict) else "")
            + "."
        )
    smiles = str(data["smiles"])
    reference = Chem.MolFromSmiles(smiles)
    if reference is None:
        return None, "smiles_parse_failed"
    canonical = Chem.MolToSmiles(reference, isomericSmiles=False)
    confs = list(data["conformers"])
    kept: list[tuple[Any, float, float]] = []
    signature = None
    dropped = Counter()
    for conf in confs:
        mol = conf.get("rd_mol") if isinstance(conf, dict) else None
        if mol is None or not isinstance(mol, Chem.Mol) or mol.GetNumConformers() < 1:
            dropped["no_rd_mol"] += 1
            continue
        if filter_reacted and _canonical_no_stereo(mol) != canonical:
            dropped["reacted"] += 1
            continue
        sig = _graph_signature(mol)
        if signature is None:
            signature = sig
        elif sig != signature:
            dropped["atom_order_mismatch"] += 1
            continue
        weight = float(conf.get("boltzmannweight", np.nan))
        energy = float(conf.get("totalenergy", np.nan))
        kept.append((mol, weight, energy))
    if not kept:
        return None, "no_valid_conformers"
    if max_conformers is not None and len(kept) > max_conformers:
        # Keep the most probable conformers (ETFlow keeps the top 30 by Boltzmann weight).
        order = np.argsort([-np.nan_to_num(w, nan=-np.inf) for _, w, _ in kept], kind="stable")
        kept = [kept[k] for k in order[:max_conformers]]
    graph = Chem.Mol(kept[0][0])
    graph.RemoveAllConformers()
    positions = np.stack([m.GetConformer().GetPositions() for m, _, _ in kept])
    add_conformers(graph, positions)
    raw = np.array([w for _, w, _ in kept], np.float64)
    weights = raw / raw.sum() if raw.sum() > 0 else np.full(len(raw), np.nan)
    if not np.all(np.isfinite(weights)):
        weights = np.full(len(raw), 1.0 / len(raw))
    record = {
        "smiles": smiles,
        "mol": graph,
        "positions": positions,
        "boltzmann_weights": raw,
        "weights": weights,
        "energies": np.array([e for _, _, e in kept], np.float64),
        "atomic_numbers": np.array([a.GetAtomicNum() for a in graph.GetAtoms()], np.int32),
        "num_atoms": graph.GetNumAtoms(),
        "num_dropped": int(sum(dropped.values())),
        "source": where,
    }
    return record, None


def load_geom_molecule(
    path: str | os.PathLike,
    *,
    filter_reacted: bool = True,
    max_conformers: int | None = None,
) -> dict[str, Any] | None:
    """Reads one GEOM `rdkit_folder` pickle (`<smiles>.pickle`) into a molecule record.

    Security: this unpickles `path`, which runs code from the file. Only pass files from a
    source you trust; convert them once with `convert_to_cache` and read the cache after.

    Args:
      path: the pickle file (a dict with "smiles" and "conformers", each conformer a dict
        with "rd_mol", "boltzmannweight", "totalenergy", ...).
      filter_reacted: drop conformers whose heavy-atom graph (non-isomeric canonical
        SMILES) differs from the molecule's SMILES (Torsional Diffusion's cleaning).
      max_conformers: keep at most this many, the largest Boltzmann weights first.

    Returns:
      None if no conformer survives, else a dict:
        smiles             the pickle's SMILES;
        mol                an RDKit Mol (graph of the first kept conformer, hydrogens
                           explicit) carrying all kept conformers, ids 0..C-1;
        positions          `[C, n, 3]` float64, Angstrom, in the Mol's atom order;
        boltzmann_weights  `[C]` as stored; weights `[C]` renormalised to sum 1 (uniform
                           if the stored ones are missing);
        energies           `[C]` "totalenergy" (Hartree; NaN if missing);
        atomic_numbers `[n]`, num_atoms, num_dropped (conformers removed), source.

    Raises:
      FileNotFoundError: `path` does not exist (with where the data is published).
      ValueError: the file is not a GEOM molecule pickle.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise _missing(f"GEOM molecule pickle {path.name}", [path])
    record, _ = molecule_from_dict(
        _unpickle(path), str(path), filter_reacted=filter_reacted, max_conformers=max_conformers
    )
    return record


def load_split_indices(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a split file: three index arrays (train, val, test) into the sorted pickles.

    Tried first with `allow_pickle=False` (a plain `[3, K]` integer array); the published
    files are object arrays, which numpy can only read by unpickling (`allow_pickle=True`,
    which runs code from the file): that is done only for the path the caller gives.

    Returns:
      `{"train", "val", "test"}` -> sorted int64 indices.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise _missing("GEOM split file", [path])
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError:
        arr = np.load(path, allow_pickle=True)  # noqa: S301 - documented above
    if len(arr) != 3:
        raise ValueError(
            f"{path} should hold three index arrays (train, val, test); it holds {len(arr)}."
        )
    return {
        name: np.sort(np.asarray(part, dtype=np.int64))
        for name, part in zip(SPLIT_NAMES, arr, strict=True)
    }


_log = logging.getLogger(__name__)


def _find_pickle_dir(data_dir: Path, dataset: str | None, pickle_dir) -> Path:
    """The pickle folder: `pickle_dir`, else `<root>/rdkit_folder/<dataset>` or `<root>/<dataset>`.

    Nothing outside `data_dir` (the release root) is looked at unless `pickle_dir` names it.
    """
    if pickle_dir is not None:
        p = Path(pickle_dir).expanduser()
        if not p.is_dir():
            raise _missing("GEOM pickle folder", [p])
        return p
    names = [dataset] if dataset else ["qm9", "drugs"]
    looked = []
    for name in names:
        for cand in (data_dir / "rdkit_folder" / name, data_dir / name):
            looked.append(cand)
            if cand.is_dir() and any(cand.glob("*.pickle")):
                return cand
    hint = ""
    if (data_dir.parent / "rdkit_folder").is_dir():
        hint = (
            f" The release root seems to be {data_dir.parent}: pass it as data_dir (or name the "
            "folder with pickle_dir); nothing outside data_dir is read."
        )
    err = _missing("GEOM per-molecule pickles (<smiles>.pickle)", looked)
    raise FileNotFoundError(str(err) + hint)


def _find_split_file(data_dir: Path, dataset: str | None, split_file) -> Path:
    """The split file: `split_file`, else the first of `SPLIT_FILES` in `<root>/<DATASET>`
    or `<root>`."""
    if split_file is not None:
        return Path(split_file).expanduser()
    folders = [data_dir / n.upper() for n in ([dataset] if dataset else ["qm9", "drugs"])]
    cands = [f / s for f in (*folders, data_dir) for s in SPLIT_FILES]
    for c in cands:
        if c.is_file():
            return c
    raise _missing("GEOM split file", cands)


def _infer_dataset(data_dir: Path, dataset: str | None) -> str | None:
    if dataset is not None:
        if dataset not in ("qm9", "drugs"):
            raise ValueError(f"dataset must be 'qm9' or 'drugs'; got {dataset!r}.")
        return dataset
    name = data_dir.name.lower()
    return name if name in ("qm9", "drugs") else None


def load_geom_split(
    data_dir: str | os.PathLike,
    split: str,
    *,
    dataset: str | None = None,
    pickle_dir: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    max_molecules: int | None = None,
    filter_reacted: bool = True,
    skip_fragments: bool = True,
    max_conformers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Reads the molecules of one split of GEOM-QM9 / GEOM-Drugs from the published pickles.

    Security: unpickles the split file and the selected files of the pickle folder, which
    runs code from those files. Only use it on data you trust; convert once with
    `convert_to_cache` and read the cache with `load_cached`. Nothing outside `data_dir`
    (or the explicit `pickle_dir` / `split_file`) is opened, and the full list of files to
    unpickle is logged (INFO, logger `symdiff_jax.data.geom_pickles`) before the first is
    read.

    The split file's indices select from the pickle files sorted by path (Torsional
    Diffusion's convention); the split's indices are sorted.

    Args:
      data_dir: the release root R, laid out as published: the split file (`split.npy`,
        `splits/split0.npy` or `split_boot0.npy`) in `R/<DATASET>/` (QM9 / DRUGS) or `R/`,
        the pickles in `R/rdkit_folder/<dataset>/` or `R/<dataset>/`, unless `split_file`
        / `pickle_dir` name them.
      split: "train", "val" ("valid") or "test".
      dataset: "qm9" or "drugs"; default inferred from `data_dir`'s name (QM9 / DRUGS),
        else both names are tried.
      pickle_dir: the folder of `<smiles>.pickle` files (overrides the search).
      split_file: the split file (overrides the search).
      max_molecules: read only the first this many molecules of the split.
      filter_reacted, max_conformers: as `load_geom_molecule`.
      skip_fragments: drop molecules whose SMILES has several fragments (".").
      progress: show a tqdm progress bar.

    Returns:
      `{"molecules": [record, ...] (as `load_geom_molecule`, plus "split_index", the
      position of the file in the sorted listing), "skipped": {reason: count},
      "pickle_dir": str, "split_file": str, "pickles": [the files unpickled]}`. Skip reasons: "smiles_parse_failed",
      "no_valid_conformers", "fragments", "index_out_of_range".

    Raises:
      FileNotFoundError: the split file or pickle folder is missing (the message lists
        where it looked, where the data is published, and the release root when `data_dir`
        looks like its `QM9/` sub-folder).
    """
    data_dir = Path(data_dir).expanduser()
    name = split_name(split)
    ds = _infer_dataset(data_dir, dataset)
    split_path = _find_split_file(data_dir, ds, split_file)
    folder = _find_pickle_dir(data_dir, ds, pickle_dir)
    _log.info("GEOM: unpickling the split file %s", split_path)
    indices = load_split_indices(split_path)[name]
    files = sorted(str(p) for p in folder.glob("*.pickle"))
    if max_molecules is not None:
        indices = indices[: int(max_molecules)]
    selected = [files[i] for i in indices if 0 <= i < len(files)]
    _log.info("GEOM %s: unpickling %d files: %s", name, len(selected), ", ".join(selected))
    skipped: Counter = Counter()
    molecules = []
    iterator: Iterable = indices
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(indices, desc=f"GEOM {name}")
    for idx in iterator:
        if idx < 0 or idx >= len(files):
            skipped["index_out_of_range"] += 1
            continue
        data = _unpickle(Path(files[idx]))
        if skip_fragments and isinstance(data, dict) and "." in str(data.get("smiles", "")):
            skipped["fragments"] += 1
            continue
        record, reason = molecule_from_dict(
            data, files[idx], filter_reacted=filter_reacted, max_conformers=max_conformers
        )
        if record is None:
            skipped[reason] += 1
            continue
        record["split_index"] = int(idx)
        molecules.append(record)
    return {
        "molecules": molecules,
        "skipped": dict(skipped),
        "pickle_dir": str(folder),
        "split_file": str(split_path),
        "pickles": selected,
    }


def load_test_smiles(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads `test_smiles.csv`: a header, then `smiles, n_conformers, corrected_smiles` rows.

    Plain CSV (no pickle). Columns are taken by position, as Torsional Diffusion's
    `generate_confs.py` does.

    Returns:
      `{"smiles": [M] str, "num_conformers": [M] int64, "corrected_smiles": [M] str}`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise _missing("test_smiles.csv", [path])
    smiles, counts, corrected = [], [], []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; expected a header and rows.")
        for k, row in enumerate(reader):
            if not row:
                continue
            if len(row) < 3:
                raise ValueError(
                    f"{path}, data row {k}: expected 'smiles, n_conformers, corrected_smiles'; "
                    f"got {row!r}."
                )
            smiles.append(row[0].strip())
            counts.append(int(float(row[1])))
            corrected.append(row[2].strip())
    return {
        "smiles": np.array(smiles, dtype=str),
        "num_conformers": np.array(counts, np.int64),
        "corrected_smiles": np.array(corrected, dtype=str),
    }


def load_test_mols(path: str | os.PathLike) -> dict[str, list]:
    """Reads `test_mols.pkl`: a dict `smiles -> list of RDKit Mols` (reference conformers).

    Security: unpickles `path`, which runs code from the file; only pass a trusted file
    (Torsional Diffusion's data release), then use `convert_to_cache` / `load_cached`.

    Returns:
      The dict, checked: str keys, lists of `rdkit.Chem.Mol` values with a conformer each.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise _missing("test_mols.pkl", [path])
    _log.info("GEOM: unpickling %s", path)
    data = _unpickle(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a dict smiles -> list of Mols; got {type(data)}.")
    for key, mols in data.items():
        mols = list(mols) if isinstance(mols, list | tuple) else [mols]
        if not all(isinstance(m, Chem.Mol) and m.GetNumConformers() >= 1 for m in mols):
            raise ValueError(f"{path}: entry {key!r} is not a list of RDKit Mols with conformers.")
        data[key] = mols
    return data


def split_conformers(mol: Any) -> list:
    """One RDKit Mol per conformer of `mol` (the list format of `conformer_metrics`)."""
    out = []
    for conf in mol.GetConformers():
        m = Chem.Mol(mol)
        m.RemoveAllConformers()
        c = Chem.Conformer(conf)
        c.SetId(0)
        m.AddConformer(c, assignId=False)
        out.append(m)
    return out
