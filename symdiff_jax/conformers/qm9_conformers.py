"""qm9_conformers: an offline conformer-generation benchmark built from QM9.

Each QM9 molecule (from `load_qm9`, the `qm9pack` wheel by default) becomes one conformer
generation problem: the molecular graph comes from its GDB-17 SMILES, mapped onto QM9's atom
order, and its B3LYP/6-31G(2df,p) equilibrium geometry is the reference conformer. Train on
the QM9 train split, evaluate on the test split (EDM's split, as `load_qm9`).

Single reference: every molecule has exactly ONE reference conformer, the DFT minimum of the
QM9 record. This differs from GEOM-QM9, where each molecule has a CREST ensemble of
conformers with Boltzmann weights (often several, up to dozens). Coverage and AMR on this
benchmark therefore measure how close generated conformers come to that one minimum
(recall over a single reference: COV-R is 0 or 1 per molecule) and are not comparable with
GEOM-QM9 numbers such as paper 000's Table 2.

Graph mapping, per molecule:
1. template = `Chem.AddHs(Chem.MolFromSmiles(smiles))` (hydrogens as atoms);
2. the xyz connectivity from `rdDetermineBonds.DetermineConnectivity` (covalent radii,
   factor 1.3, as RDKit implements it) on QM9's atoms and coordinates;
3. a substructure match of the template's element-labelled skeleton (all bonds as plain
   edges) into the xyz skeleton, respecting elements; extra xyz contacts (cage molecules
   have short non-bonded distances) are allowed, and among the matches (up to 256) the one
   with the shortest total template bond length is kept;
4. the template renumbered into QM9's atom order (`Chem.RenumberAtoms`), with bond types,
   formal charges and aromaticity from the SMILES and the DFT geometry as its conformer.
A molecule is skipped, and counted by reason, when the SMILES does not parse
("smiles_parse_failed"), the SMILES and the xyz disagree in elements ("formula_mismatch"),
RDKit cannot perceive the xyz connectivity ("connectivity_failed") or no element-respecting
match of the SMILES graph into the xyz graph exists ("no_match", e.g. a bond of the SMILES
stretched beyond 1.3 x the covalent radii in the DFT geometry).

Arrays are cached as an npz under `cache_dir` (default `<default_cache_dir()>/conformers`,
i.e. `$SYMDIFF_JAX_DATA/qm9/conformers` or `~/.cache/symdiff_jax/qm9/conformers`).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds

from symdiff_jax.data.atomic import read_cache_npz, write_npz_atomic
from symdiff_jax.data.geom_features import BOND_ORDERS, HYBRIDISATIONS
from symdiff_jax.data.qm9 import (
    MAX_ATOMS,
    default_cache_dir,
    load_qm9,
    qm9pack_version,
)

__all__ = [
    "SKIP_REASONS",
    "as_rdkit_mol",
    "bond_orders",
    "load_qm9_conformers",
    "map_smiles_to_geometry",
]

#: Reasons a molecule is skipped (see the module docstring).
SKIP_REASONS: tuple[str, ...] = (
    "smiles_parse_failed",
    "formula_mismatch",
    "connectivity_failed",
    "no_match",
)
#: Version of the cache layout.
CACHE_FORMAT: int = 2
#: The arrays every conformer cache file must hold.
CACHE_KEYS = (
    "positions",
    "charges",
    "num_atoms",
    "smiles",
    "index",
    "split_position",
    "bond_types",
    "skipped_index",
    "skipped_position",
    "skip_reason",
    "formal_charges",
    "aromatic",
    "hybridisation",
    "chiral_tags",
)
_MAX_MATCHES = 256


def _skeleton(mol: Any):
    """Element-labelled graph of `mol` with every bond a plain single edge."""
    rw = Chem.RWMol()
    for atom in mol.GetAtoms():
        a = Chem.Atom(atom.GetAtomicNum())
        a.SetNoImplicit(True)
        rw.AddAtom(a)
    for bond in mol.GetBonds():
        rw.AddBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), Chem.BondType.SINGLE)
    out = rw.GetMol()
    out.UpdatePropertyCache(strict=False)
    return out


def _xyz_mol(atomic_numbers: np.ndarray, positions: np.ndarray):
    rw = Chem.RWMol()
    for z in atomic_numbers:
        rw.AddAtom(Chem.Atom(int(z)))
    mol = rw.GetMol()
    conf = Chem.Conformer(len(atomic_numbers))
    for i, p in enumerate(np.asarray(positions, np.float64)):
        conf.SetAtomPosition(i, p.tolist())
    mol.AddConformer(conf, assignId=True)
    return mol


def map_smiles_to_geometry(
    smiles: str, atomic_numbers: Any, positions: Any
) -> tuple[Any | None, str | None]:
    """The SMILES graph in the atom order of an xyz geometry, with it as conformer.

    Steps as in the module docstring (template with hydrogens, xyz connectivity by
    `DetermineConnectivity`, element-respecting skeleton match, renumbering).

    Args:
      smiles: SMILES of the molecule (hydrogens implicit or explicit).
      atomic_numbers: `[n]` atomic numbers of the geometry's atoms (no padding).
      positions: `[n, 3]` coordinates in Angstrom.

    Returns:
      `(mol, None)` with `mol` an RDKit Mol whose atom `k` is geometry atom `k` (same
      element), bonds/charges/aromaticity from the SMILES, one conformer; or `(None,
      reason)` with a reason from `SKIP_REASONS`.
    """
    z = np.asarray(atomic_numbers, np.int64)
    x = np.asarray(positions, np.float64)
    base = Chem.MolFromSmiles(str(smiles))
    if base is None:
        return None, "smiles_parse_failed"
    template = Chem.AddHs(base)
    if sorted(a.GetAtomicNum() for a in template.GetAtoms()) != sorted(z.tolist()):
        return None, "formula_mismatch"
    xyz = _xyz_mol(z, x)
    try:
        rdDetermineBonds.DetermineConnectivity(xyz)
    except Exception:  # noqa: BLE001 - RDKit raises several types
        return None, "connectivity_failed"
    query, target = _skeleton(template), _skeleton(xyz)
    # With as many xyz bonds as SMILES bonds a match is a graph isomorphism and all matches
    # differ by an automorphism, so one is enough; otherwise compare up to _MAX_MATCHES.
    same = query.GetNumBonds() == target.GetNumBonds()
    matches = target.GetSubstructMatches(
        query, uniquify=False, useChirality=False, maxMatches=1 if same else _MAX_MATCHES
    )
    if not matches:
        return None, "no_match"
    m = np.asarray(matches, np.int64)  # [K, n]
    pairs = np.array(
        [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in template.GetBonds()], np.int64
    ).reshape(-1, 2)
    lengths = np.linalg.norm(x[m[:, pairs[:, 0]]] - x[m[:, pairs[:, 1]]], axis=-1).sum(-1)
    best = m[int(np.argmin(lengths))]
    # best[i] = geometry atom of template atom i; atom k of the result is template atom
    # new_order[k], so new_order is the inverse permutation.
    new_order = np.argsort(best)
    mol = Chem.RenumberAtoms(template, new_order.tolist())
    conf = Chem.Conformer(mol.GetNumAtoms())
    for i, p in enumerate(x):
        conf.SetAtomPosition(i, p.tolist())
    mol.AddConformer(conf, assignId=True)
    return mol, None


def _stereo_tags(mol: Any) -> np.ndarray:
    """Chiral tags from the 3D structure (on a copy): +1 CCW, -1 CW, 0 none, relative to
    the neighbours in ascending atom index (`symdiff_jax.conformers.chirality`)."""
    from symdiff_jax.conformers.chirality import chiral_tags_ascending

    m = Chem.Mol(mol)
    Chem.AssignStereochemistryFrom3D(m)
    return chiral_tags_ascending(m).astype(np.int8)


def _build(qm9: dict[str, np.ndarray], positions_in_split: np.ndarray, progress: bool):
    hyb = {getattr(Chem.HybridizationType, h): k + 1 for k, h in enumerate(HYBRIDISATIONS)}
    code = {
        Chem.BondType.SINGLE: 1,
        Chem.BondType.DOUBLE: 2,
        Chem.BondType.TRIPLE: 3,
        Chem.BondType.AROMATIC: 4,
    }
    keep, rows = [], []
    skipped_index, skipped_position, skip_reason = [], [], []
    iterator = positions_in_split
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(positions_in_split, desc="qm9_conformers")
    for s in iterator:
        n = int(qm9["num_atoms"][s])
        mol, reason = map_smiles_to_geometry(
            qm9["smiles"][s], qm9["charges"][s, :n], qm9["positions"][s, :n]
        )
        if mol is None:
            skipped_index.append(int(qm9["index"][s]))
            skipped_position.append(int(s))
            skip_reason.append(reason)
            continue
        bonds = np.zeros((MAX_ATOMS, MAX_ATOMS), np.uint8)
        for b in mol.GetBonds():
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            bonds[i, j] = bonds[j, i] = code[b.GetBondType()]
        atoms = list(mol.GetAtoms())
        per_atom = np.zeros((4, MAX_ATOMS), np.int8)
        per_atom[0, :n] = [a.GetFormalCharge() for a in atoms]
        per_atom[1, :n] = [int(a.GetIsAromatic()) for a in atoms]
        per_atom[2, :n] = [hyb.get(a.GetHybridization(), 0) for a in atoms]
        per_atom[3, :n] = _stereo_tags(mol)
        keep.append(int(s))
        rows.append((bonds, per_atom))
    keep = np.array(keep, np.int64)
    out = {
        "positions": qm9["positions"][keep].astype(np.float32),
        "charges": qm9["charges"][keep].astype(np.int32),
        "num_atoms": qm9["num_atoms"][keep].astype(np.int32),
        "smiles": qm9["smiles"][keep],
        "index": qm9["index"][keep].astype(np.int32),
        "split_position": keep,
        "bond_types": np.stack([r[0] for r in rows])
        if rows
        else np.zeros((0, MAX_ATOMS, MAX_ATOMS), np.uint8),
        "skipped_index": np.array(skipped_index, np.int32),
        "skipped_position": np.array(skipped_position, np.int64),
        "skip_reason": np.array(skip_reason, dtype=str),
    }
    per = np.stack([r[1] for r in rows]) if rows else np.zeros((0, 4, MAX_ATOMS), np.int8)
    for k, name in enumerate(("formal_charges", "aromatic", "hybridisation", "chiral_tags")):
        out[name] = per[:, k]
    return out


def _finish(data: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = dict(data)
    out["charges"] = out["charges"].astype(np.int32)
    counts = Counter(str(r) for r in out["skip_reason"])
    out["skipped"] = {r: counts.get(r, 0) for r in SKIP_REASONS}
    out["num_skipped"] = int(len(out["skip_reason"]))
    return out


def load_qm9_conformers(
    split: str,
    max_molecules: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    qm9_source: str | os.PathLike | None = None,
    qm9_cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The qm9_conformers benchmark: QM9 molecules with their graph in QM9's atom order.

    Single-reference: one DFT (B3LYP) reference conformer per molecule, unlike GEOM's CREST
    ensembles (see the module docstring for what that means for COV/AMR).

    Args:
      split: "train", "valid", "test" (EDM's QM9 split) or "all".
      max_molecules: use only the first this many molecules of the split (in GDB-index
        order); skipped ones count towards it. None: the whole split.
      cache_dir: where the npz cache lives (default `<default_cache_dir()>/conformers`).
      qm9_source, qm9_cache_dir: passed to `load_qm9` as `source` / `cache_dir`.
      progress: tqdm progress bar while building.

    Returns:
      A dict (M = molecules kept, padded to N = 29 atoms, real atoms first):
        positions       `[M, 29, 3]` float32, the DFT geometry (Angstrom, not centred);
        charges         `[M, 29]` int32 atomic numbers, 0 = padding;
        num_atoms       `[M]` int32;
        bond_types      `[M, 29, 29]` uint8 codes (`BOND_TYPE_NAMES`: 1 single, 2 double,
                        3 triple, 4 aromatic; 0 none); orders via `bond_orders(data)`;
        formal_charges, aromatic, hybridisation, chiral_tags  `[M, 29]` int8 (hybridisation
                        codes as `graph_features`; chiral tags +1 CCW / -1 CW assigned from
                        the DFT geometry, relative to the neighbours in ascending atom
                        index; the GDB SMILES has no stereo);
        smiles          `[M]` GDB-17 SMILES; index `[M]` int32 GDB index;
        split_position  `[M]` int64 row of the molecule in `load_qm9(split)`;
        skipped_index   `[S]` GDB indices of skipped molecules, skipped_position `[S]`
                        their rows in `load_qm9(split)`, skip_reason `[S]`;
        skipped         `{reason: count}` over `SKIP_REASONS`; num_skipped `int`.

    Raises:
      ImportError / FileNotFoundError / ValueError: as `load_qm9`.
    """
    cache = (
        Path(cache_dir).expanduser()
        if cache_dir is not None
        else default_cache_dir() / "conformers"
    )
    source_key = (
        f"qm9pack-{qm9pack_version()}"
        if qm9_source is None
        else "src-" + Path(qm9_source).expanduser().resolve().name
    )
    full_file = cache / f"{source_key}-{split}-all-v{CACHE_FORMAT}.npz"
    files = [full_file]
    if max_molecules is not None:
        files.append(cache / f"{source_key}-{split}-{int(max_molecules)}-v{CACHE_FORMAT}.npz")
    for f in files:
        data = read_cache_npz(f, CACHE_FORMAT, CACHE_KEYS)
        if data is not None:
            if f is full_file and max_molecules is not None:
                keep = data["split_position"] < int(max_molecules)
                drop = data["skipped_position"] < int(max_molecules)
                skip_keys = ("skipped_index", "skipped_position", "skip_reason")
                data = {k: v[drop] if k in skip_keys else v[keep] for k, v in data.items()}
            return _finish(data)
    qm9 = load_qm9(split, source=qm9_source, cache_dir=qm9_cache_dir)
    total = len(qm9["index"])
    count = total if max_molecules is None else min(int(max_molecules), total)
    data = _build(qm9, np.arange(count), progress)
    write_npz_atomic(files[-1], {**data, "cache_format": np.array(CACHE_FORMAT)})
    return _finish(data)


def bond_orders(data: dict[str, Any]) -> np.ndarray:
    """`[M, 29, 29]` float32 bond orders (1, 2, 3, aromatic 1.5; 0 none) of a loaded split."""
    return BOND_ORDERS[np.asarray(data["bond_types"])]


def as_rdkit_mol(data: dict[str, Any], i: int, *, stereo_from_3d: bool = False):
    """Molecule `i` of `load_qm9_conformers` as an RDKit Mol with its reference conformer.

    Rebuilt from the arrays (atoms in QM9's order, hydrogens explicit, bonds, formal charges
    and aromaticity), sanitised, with the DFT geometry as conformer 0.

    Args:
      data: the dict `load_qm9_conformers` returns.
      i: row index.
      stereo_from_3d: also assign chiral tags / bond stereo from the geometry
        (`Chem.AssignStereochemistryFrom3D`); by default the graph carries no stereo, like
        the GDB SMILES.

    Returns:
      `rdkit.Chem.Mol`.
    """
    n = int(data["num_atoms"][i])
    types = {
        1: Chem.BondType.SINGLE,
        2: Chem.BondType.DOUBLE,
        3: Chem.BondType.TRIPLE,
        4: Chem.BondType.AROMATIC,
    }
    rw = Chem.RWMol()
    for k in range(n):
        atom = Chem.Atom(int(data["charges"][i, k]))
        atom.SetFormalCharge(int(data["formal_charges"][i, k]))
        atom.SetIsAromatic(bool(data["aromatic"][i, k]))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    bt = np.asarray(data["bond_types"][i])
    for a, b in zip(*np.nonzero(np.triu(bt[:n, :n], 1)), strict=True):
        rw.AddBond(int(a), int(b), types[int(bt[a, b])])
        if int(bt[a, b]) == 4:
            rw.GetBondBetweenAtoms(int(a), int(b)).SetIsAromatic(True)
    mol = rw.GetMol()
    Chem.SanitizeMol(mol)
    conf = Chem.Conformer(n)
    for k, p in enumerate(np.asarray(data["positions"][i, :n], np.float64)):
        conf.SetAtomPosition(k, p.tolist())
    mol.AddConformer(conf, assignId=True)
    if stereo_from_3d:
        Chem.AssignStereochemistryFrom3D(mol)
    mol.SetProp("_Name", f"gdb_{int(data['index'][i])}")
    return mol
