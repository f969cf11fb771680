"""GEOM-QM9 and GEOM-Drugs conformer ensembles in the formats of the conformer literature.

Security: the published files are Python pickles, and loading a pickle runs code chosen by
whoever wrote the file. The functions here that read pickles (`load_geom_molecule`,
`load_geom_split`, `load_test_mols`, `convert_to_cache`, and `load_split_indices` when the
split file holds object arrays) only read paths the caller passes in, never a default or
downloaded location. Use them on files from a source you trust (the releases named below),
once: `convert_to_cache` writes a safe cache (SDF with properties, plus an npz index read
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

Graph featurisation (`graph_features`) follows the QM9 conventions of this package: real
atoms first, then padding; atomic numbers 0 and masks 0 on padded slots.
"""

from __future__ import annotations

import csv
import os
import pickle
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from symdiff_jax.data.atomic import atomic_write, write_npz_atomic
from symdiff_jax.data.features import edge_mask as _edge_mask

__all__ = [
    "BOND_ORDERS",
    "BOND_TYPE_NAMES",
    "GEOM_DRUGS_ELEMENTS",
    "GEOM_QM9_ELEMENTS",
    "HYBRIDISATIONS",
    "convert_to_cache",
    "graph_features",
    "load_cached",
    "load_geom_molecule",
    "load_geom_split",
    "load_split_indices",
    "load_test_mols",
    "load_test_smiles",
    "split_conformers",
    "write_example_geom",
]

#: Element one-hot order for GEOM-QM9 (Torsional Diffusion's `qm9_types`).
GEOM_QM9_ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F")
#: Element one-hot order for GEOM-Drugs (Torsional Diffusion's `drugs_types`).
GEOM_DRUGS_ELEMENTS: tuple[str, ...] = (
    "H", "Li", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca",
    "V", "Cr", "Mn", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Ag", "In", "Sb", "I", "Gd",
    "Pt", "Au", "Hg", "Bi",
)  # fmt: skip
#: Bond type codes of `graph_features["bond_types"]`: index = code, 0 = no bond.
BOND_TYPE_NAMES: tuple[str, ...] = ("none", "single", "double", "triple", "aromatic")
#: Bond order of each bond type code (aromatic 1.5): `BOND_ORDERS[bond_types]`.
BOND_ORDERS: np.ndarray = np.array([0.0, 1.0, 2.0, 3.0, 1.5], np.float32)
#: Hybridisation codes of `graph_features["hybridisation"]`: code k + 1 for entry k, 0 for
#: anything else (unspecified, other) and for padding.
HYBRIDISATIONS: tuple[str, ...] = ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2")
#: Split names (Torsional Diffusion's order in the split file); "valid" is an alias of "val".
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Where `load_geom_split` looks for the split file inside `data_dir`, in order.
SPLIT_FILES: tuple[str, ...] = ("split.npy", "splits/split0.npy", "split_boot0.npy")
#: Cache format version written into every cache index.
CACHE_FORMAT: int = 1

_DATAVERSE = "https://dataverse.harvard.edu/api/access/datafile/4327252"
_WHERE_PUBLISHED = (
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
    return FileNotFoundError(f"{what} not found (looked for: {paths}). {_WHERE_PUBLISHED}")


def _split_name(split: str) -> str:
    name = "val" if split == "valid" else split
    if name not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES} (or 'valid'); got {split!r}.")
    return name


def _unpickle(path: Path) -> Any:
    """Reads a pickle from a path the caller gave (this runs code from the file)."""
    with open(path, "rb") as f:
        return pickle.load(f)  # noqa: S301 - documented: only paths the user passes


# --------------------------------------------------------------------------------------
# Graph featurisation


def graph_features(
    mol: Any,
    *,
    elements: Sequence[str] = GEOM_QM9_ELEMENTS,
    max_atoms: int | None = None,
    max_bonds: int | None = None,
) -> dict[str, np.ndarray]:
    """Dense, padded features of a molecular graph (atoms in the Mol's order, then padding).

    Args:
      mol: an `rdkit.Chem.Mol` with explicit hydrogens if they are to be atoms.
      elements: element symbols of the one-hot, in order (`GEOM_QM9_ELEMENTS`,
        `GEOM_DRUGS_ELEMENTS`, or any list).
      max_atoms: pad atom arrays to this size N (default: the number of atoms n).
      max_bonds: pad the bond list to this size (default: the number of bonds).

    Returns:
      numpy arrays (N = max_atoms, B = max_bonds, T = len(elements)):
        atomic_numbers  `[N]` int32, 0 = padding (the QM9 `charges` convention);
        atom_types      `[N]` int32 index into `elements`, -1 on padding;
        one_hot         `[N, T]` float32 element one-hot, 0 on padding;
        formal_charges  `[N]` int32;
        aromatic        `[N]` float32 (1 for aromatic atoms);
        hybridisation   `[N]` int32 code (`HYBRIDISATIONS`, 0 = other / padding);
        chiral_tags     `[N]` int32: +1 CCW, -1 CW, 0 none (Torsional Diffusion's signs);
        num_hs          `[N]` int32 hydrogens attached (explicit neighbours + implicit);
        bond_types      `[N, N]` int32 code (`BOND_TYPE_NAMES`), symmetric, 0 = no bond;
        bond_orders     `[N, N]` float32 (1, 2, 3, aromatic 1.5);
        bond_index      `[B, 2]` int32 atom pairs (i < j) of the bonds, 0 on padding;
        bond_index_types `[B]` int32 bond type codes, 0 on padding;
        bond_mask       `[B]` float32;
        mask            `[N]` float32, 1 for real atoms;
        edge_mask       `[N, N]` float32, pairs of distinct real atoms;
        num_atoms, num_bonds  `[]` int32.

    Raises:
      ValueError: an element not in `elements` (named, with its atom index), or a size
        larger than `max_atoms` / `max_bonds`.
    """
    n = mol.GetNumAtoms()
    bonds = list(mol.GetBonds())
    big_n = n if max_atoms is None else int(max_atoms)
    big_b = len(bonds) if max_bonds is None else int(max_bonds)
    if n > big_n:
        raise ValueError(f"the molecule has {n} atoms, more than max_atoms={big_n}.")
    if len(bonds) > big_b:
        raise ValueError(f"the molecule has {len(bonds)} bonds, more than max_bonds={big_b}.")
    index = {s: k for k, s in enumerate(elements)}
    hyb = {getattr(Chem.HybridizationType, h): k + 1 for k, h in enumerate(HYBRIDISATIONS)}
    chir = {
        Chem.ChiralType.CHI_TETRAHEDRAL_CCW: 1,
        Chem.ChiralType.CHI_TETRAHEDRAL_CW: -1,
    }
    out = {
        "atomic_numbers": np.zeros(big_n, np.int32),
        "atom_types": np.full(big_n, -1, np.int32),
        "one_hot": np.zeros((big_n, len(elements)), np.float32),
        "formal_charges": np.zeros(big_n, np.int32),
        "aromatic": np.zeros(big_n, np.float32),
        "hybridisation": np.zeros(big_n, np.int32),
        "chiral_tags": np.zeros(big_n, np.int32),
        "num_hs": np.zeros(big_n, np.int32),
        "bond_types": np.zeros((big_n, big_n), np.int32),
        "bond_index": np.zeros((big_b, 2), np.int32),
        "bond_index_types": np.zeros(big_b, np.int32),
        "bond_mask": np.zeros(big_b, np.float32),
    }
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        symbol = atom.GetSymbol()
        if symbol not in index:
            raise ValueError(
                f"atom {i} is {symbol}, which is not in the element list {tuple(elements)}; "
                "pass elements=GEOM_DRUGS_ELEMENTS or a list that includes it."
            )
        out["atomic_numbers"][i] = atom.GetAtomicNum()
        out["atom_types"][i] = index[symbol]
        out["one_hot"][i, index[symbol]] = 1.0
        out["formal_charges"][i] = atom.GetFormalCharge()
        out["aromatic"][i] = float(atom.GetIsAromatic())
        out["hybridisation"][i] = hyb.get(atom.GetHybridization(), 0)
        out["chiral_tags"][i] = chir.get(atom.GetChiralTag(), 0)
        explicit = sum(1 for nb in atom.GetNeighbors() if nb.GetAtomicNum() == 1)
        try:
            implicit = atom.GetNumImplicitHs()
        except RuntimeError:  # property cache not computed (unsanitised molecule)
            implicit = 0
        out["num_hs"][i] = explicit + implicit
    code = {
        Chem.BondType.SINGLE: 1,
        Chem.BondType.DOUBLE: 2,
        Chem.BondType.TRIPLE: 3,
        Chem.BondType.AROMATIC: 4,
    }
    for k, bond in enumerate(bonds):
        i, j = sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
        c = code.get(bond.GetBondType())
        if c is None:
            raise ValueError(
                f"bond {i}-{j} has type {bond.GetBondType()}; only single, double, triple and "
                "aromatic bonds are featurised."
            )
        out["bond_types"][i, j] = out["bond_types"][j, i] = c
        out["bond_index"][k] = (i, j)
        out["bond_index_types"][k] = c
        out["bond_mask"][k] = 1.0
    out["bond_orders"] = BOND_ORDERS[out["bond_types"]]
    mask = (np.arange(big_n) < n).astype(np.float32)
    out["mask"] = mask
    out["edge_mask"] = _edge_mask(mask).astype(np.float32)
    out["num_atoms"] = np.int32(n)
    out["num_bonds"] = np.int32(len(bonds))
    return out


# --------------------------------------------------------------------------------------
# Reading the published files


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


def _molecule_from_dict(
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
    for k, x in enumerate(positions):
        conf = Chem.Conformer(graph.GetNumAtoms())
        for i, p in enumerate(x):
            conf.SetAtomPosition(i, p.tolist())
        conf.SetId(k)
        graph.AddConformer(conf, assignId=False)
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
    record, _ = _molecule_from_dict(
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


def _find_pickle_dir(data_dir: Path, dataset: str | None, pickle_dir) -> Path:
    if pickle_dir is not None:
        p = Path(pickle_dir).expanduser()
        if not p.is_dir():
            raise _missing("GEOM pickle folder", [p])
        return p
    names = [dataset] if dataset else ["qm9", "drugs"]
    looked = []
    for name in names:
        for cand in (
            data_dir / name,
            data_dir / "rdkit_folder" / name,
            data_dir.parent / "rdkit_folder" / name,
        ):
            looked.append(cand)
            if cand.is_dir() and any(cand.glob("*.pickle")):
                return cand
    raise _missing("GEOM per-molecule pickles (<smiles>.pickle)", looked)


def _find_split_file(data_dir: Path, split_file) -> Path:
    if split_file is not None:
        return Path(split_file).expanduser()
    cands = [data_dir / s for s in SPLIT_FILES]
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

    Security: unpickles every selected file under the pickle folder (and the split file),
    which runs code from those files. Only use it on data you trust, given explicitly by
    path; convert once with `convert_to_cache` and read the cache with `load_cached`.

    The split file's indices select from the pickle files sorted by path (Torsional
    Diffusion's convention); the split's indices are sorted.

    Args:
      data_dir: folder with the split file (`split.npy`, `splits/split0.npy` or
        `split_boot0.npy`), e.g. Torsional Diffusion's `data/QM9`; the pickle folder is
        looked for at `<data_dir>/<dataset>`, `<data_dir>/rdkit_folder/<dataset>` and
        `<data_dir>/../rdkit_folder/<dataset>` unless `pickle_dir` is given.
      split: "train", "val" ("valid") or "test".
      dataset: "qm9" or "drugs"; default inferred from `data_dir`'s name (QM9 / DRUGS),
        else both sub-folder names are tried.
      pickle_dir: the folder of `<smiles>.pickle` files (overrides the search).
      split_file: the split file (overrides the search).
      max_molecules: read only the first this many molecules of the split.
      filter_reacted, max_conformers: as `load_geom_molecule`.
      skip_fragments: drop molecules whose SMILES has several fragments (".").
      progress: show a tqdm progress bar.

    Returns:
      `{"molecules": [record, ...] (as `load_geom_molecule`, plus "split_index", the
      position of the file in the sorted listing), "skipped": {reason: count},
      "pickle_dir": str, "split_file": str}`. Skip reasons: "smiles_parse_failed",
      "no_valid_conformers", "fragments", "index_out_of_range".

    Raises:
      FileNotFoundError: the split file or pickle folder is missing (the message lists
        where it looked and where the data is published).
    """
    data_dir = Path(data_dir).expanduser()
    name = _split_name(split)
    ds = _infer_dataset(data_dir, dataset)
    split_path = _find_split_file(data_dir, split_file)
    folder = _find_pickle_dir(data_dir, ds, pickle_dir)
    indices = load_split_indices(split_path)[name]
    files = sorted(str(p) for p in folder.glob("*.pickle"))
    if max_molecules is not None:
        indices = indices[: int(max_molecules)]
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
        record, reason = _molecule_from_dict(
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


# --------------------------------------------------------------------------------------
# Safe cache: SDF + npz index


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
    skip_counts). If `test_mols.pkl` is found (`test_mols` or `<data_dir>/test_mols.pkl`),
    also `test_mols.sdf` / `test_mols.npz`, whose index adds `num_conformers_csv` and
    `corrected_smiles` from `test_smiles.csv` when that file is there (-1 / "" otherwise).
    Files are written atomically; existing ones are replaced.

    Args:
      data_dir, dataset, pickle_dir, split_file, max_molecules, filter_reacted,
        max_conformers, progress: as `load_geom_split`.
      cache_dir: output folder.
      splits: which splits to convert (an empty tuple for test_mols only).
      test_mols, test_smiles: explicit paths (default: in `data_dir`).

    Returns:
      `Path(cache_dir)`.
    """
    data_dir = Path(data_dir).expanduser()
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    for split in splits:
        name = _split_name(split)
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
    tm = Path(test_mols).expanduser() if test_mols is not None else data_dir / "test_mols.pkl"
    if test_mols is not None or tm.is_file():
        ts = (
            Path(test_smiles).expanduser()
            if test_smiles is not None
            else data_dir / "test_smiles.csv"
        )
        table = load_test_smiles(ts) if (test_smiles is not None or ts.is_file()) else None
        mols = load_test_mols(tm)
        keys = list(mols)
        if max_molecules is not None:
            keys = keys[: int(max_molecules)]
        records, skipped = [], Counter()
        for key in keys:
            record, reason = _molecule_from_dict(
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
      ValueError: a cache written by another format version, or one whose SDF and index
        disagree.
    """
    name = "test_mols" if split == "test_mols" else _split_name(split)
    base = Path(cache_dir).expanduser() / name
    sdf, npz = base.with_suffix(".sdf"), base.with_suffix(".npz")
    if not (sdf.is_file() and npz.is_file()):
        raise FileNotFoundError(
            f"GEOM cache for split {name!r} not found (looked for {sdf} and {npz}). Create it "
            "once from the published files with symdiff_jax.data.geom.convert_to_cache("
            "data_dir, cache_dir). " + _WHERE_PUBLISHED
        )
    with np.load(npz, allow_pickle=False) as f:
        index = {k: f[k] for k in f.files}
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
        for k, x in enumerate(positions):
            conf = Chem.Conformer(graph.GetNumAtoms())
            for i, p in enumerate(x):
                conf.SetAtomPosition(i, p.tolist())
            conf.SetId(k)
            graph.AddConformer(conf, assignId=False)
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


# --------------------------------------------------------------------------------------
# Example files in the published formats (for smoke runs, demos and tests)


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
    from rdkit.Chem import AllChem

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
            params = AllChem.ETKDGv3()
            params.randomSeed = seed + 101 * k + 7
            m = Chem.Mol(mol)
            if AllChem.EmbedMolecule(m, params) != 0:
                raise RuntimeError(f"ETKDG failed to embed {s} (seed {params.randomSeed}).")
            energies.append(-100.0 - 0.001 * k)
            confs.append(m)
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
        with open(path, "wb") as f:
            pickle.dump(entry, f)
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
    with open(data_dir / "test_mols.pkl", "wb") as f:
        pickle.dump(test_mols, f)
    return {
        "data_dir": data_dir,
        "pickle_dir": folder,
        "files": files,
        "split": split,
        "smiles": [entries[p]["smiles"] for p in files],
    }
