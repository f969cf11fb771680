"""Conformer datasets as padded tables, and the batches a conformer model trains on.

A conformer dataset (`ConformerData`, a dict of numpy arrays) holds molecules (graphs, see
`symdiff_jax.conformers.graphs`) and their conformers:

  molecule table   atom_features [M, N, F], bond_types [M, N, N], atomic_numbers [M, N],
                   chiral_tags [M, N], num_atoms [M], automorphisms (ragged, aut_offsets),
                   smiles [M], conformer_offsets [M + 1] (molecule m owns conformer rows
                   conformer_offsets[m]:conformer_offsets[m + 1]);
  conformer rows   positions [C, N, 3] (Angstrom, centred), molecule [C],
                   log_weight [C] (log Boltzmann weight within the molecule; 0 for one).

Sources:
  "qm9_conformers"  the QM9 molecules with their graph and DFT geometry
                    (`symdiff_jax.conformers.qm9_conformers.load_qm9_conformers`): one reference
                    conformer per molecule, offline from the `qm9pack` wheel;
  "geom_qm9" / "geom_drugs"  GEOM's CREST ensembles from the safe SDF/npz cache that
                    `symdiff_jax.data.geom.convert_to_cache` writes once from the published
                    pickles (those run code when unpickled: convert only files you trust).

Tables are cached as npz next to the data (building one enumerates automorphisms).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from symdiff_jax.conformers.graphs import batch_automorphisms, molecule_arrays, stack_molecules
from symdiff_jax.data.atomic import read_npz, write_npz_atomic
from symdiff_jax.data.geom_features import GEOM_DRUGS_ELEMENTS, GEOM_QM9_ELEMENTS
from symdiff_jax.data.qm9 import default_cache_dir

__all__ = [
    "SOURCES",
    "conformer_batch",
    "load_conformer_data",
    "graph_mol",
    "mols_with_positions",
    "reference_mols",
    "table_from_mols",
    "train_batches",
]

SOURCES: tuple[str, ...] = ("qm9_conformers", "geom_qm9", "geom_drugs")
TABLE_FORMAT = 2
#: Automorphisms stored per molecule; a batch keeps the first `max_automorphisms` of them.
TABLE_AUTOMORPHISM_CAP = 1024
SOURCE_ELEMENTS = {
    "qm9_conformers": GEOM_QM9_ELEMENTS,
    "geom_qm9": GEOM_QM9_ELEMENTS,
    "geom_drugs": GEOM_DRUGS_ELEMENTS,
}


def table_from_mols(
    mols: list,
    positions: list[np.ndarray],
    log_weights: list[np.ndarray] | None = None,
    *,
    elements,
    max_atoms: int,
    automorphism_group: str = "heavy",
    max_automorphisms: int | None = 64,
    smiles: list[str] | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """A `ConformerData` table from RDKit graphs and their conformers.

    Args:
      mols: one `rdkit.Chem.Mol` per molecule, explicit hydrogens.
      positions: per molecule `[C_m, n_m, 3]` conformers in the Mol's atom order.
      log_weights: per molecule `[C_m]` log Boltzmann weights (default uniform).
      elements, max_atoms, automorphism_group, max_automorphisms: see `molecule_arrays`.
      smiles: one string per molecule (default RDKit's canonical SMILES).
      progress: tqdm bar.

    Returns:
      The table described in the module docstring.
    """
    from rdkit import Chem
    from tqdm.auto import tqdm

    graphs, rows, mol_index, weights = [], [], [], []
    it = tqdm(mols, desc="molecule graphs", disable=not progress, dynamic_ncols=True)
    for m, mol in enumerate(it):
        graphs.append(
            molecule_arrays(
                mol,
                elements=elements,
                max_atoms=max_atoms,
                automorphism_group=automorphism_group,
                max_automorphisms=max_automorphisms,
            )
        )
        x = np.asarray(positions[m], np.float32)
        if x.ndim == 2:
            x = x[None]
        n = mol.GetNumAtoms()
        if x.shape[1:] != (n, 3):
            raise ValueError(
                f"molecule {m}: conformers have shape {x.shape[1:]}, expected ({n}, 3)."
            )
        padded = np.zeros((len(x), max_atoms, 3), np.float32)
        padded[:, :n] = x - x.mean(axis=1, keepdims=True)
        rows.append(padded)
        mol_index.append(np.full(len(x), m, np.int32))
        w = np.zeros(len(x)) if log_weights is None else np.asarray(log_weights[m], np.float64)
        weights.append((w - np.logaddexp.reduce(w) + np.log(len(w))).astype(np.float32))
    table = stack_molecules(graphs)
    counts = np.array([len(r) for r in rows], np.int64)
    table["positions"] = np.concatenate(rows)
    table["molecule"] = np.concatenate(mol_index)
    table["log_weight"] = np.concatenate(weights)
    table["conformer_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    table["smiles"] = np.array(
        smiles if smiles is not None else [Chem.MolToSmiles(Chem.RemoveHs(m)) for m in mols],
        dtype=str,
    )
    return table


def _table_cache_file(cache_dir: Path, source: str, split: str, settings: dict) -> Path:
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir / f"{source}-{split}-{digest}-v{TABLE_FORMAT}.npz"


def _qm9_mols(split: str, max_molecules: int | None, data_cfg) -> tuple[list, list, list]:
    from symdiff_jax.conformers.qm9_conformers import as_rdkit_mol, load_qm9_conformers

    data = load_qm9_conformers(
        "valid" if split == "val" else split,
        max_molecules,
        qm9_source=data_cfg.get("source_path") or None,
    )
    mols, positions, smiles = [], [], []
    for i in range(len(data["num_atoms"])):
        # Stereo tags from the DFT geometry (the GDB SMILES has none), so the graph says
        # which enantiomer is wanted, as GEOM's stereo SMILES do.
        mol = as_rdkit_mol(data, i, stereo_from_3d=True)
        n = int(data["num_atoms"][i])
        positions.append(np.asarray(data["positions"][i, :n])[None])
        mol.RemoveAllConformers()
        mols.append(mol)
        smiles.append(str(data["smiles"][i]))
    return mols, positions, smiles


def _geom_mols(source: str, split: str, max_molecules: int | None, data_cfg, tables: Path):
    from symdiff_jax.data.geom import convert_to_cache, load_cached
    from symdiff_jax.data.geom_pickles import SPLIT_FILES

    cache = data_cfg.get("geom_cache_dir") or ""
    data_dir = data_cfg.get("geom_dir") or ""
    if not cache:
        if not data_dir:
            raise FileNotFoundError(
                f"The {source} source needs config.data.geom_cache_dir (a cache written by "
                "symdiff_jax.data.geom.convert_to_cache) or config.data.geom_dir (the folder "
                "with the published split.npy, next to rdkit_folder/; converted once)."
            )
        digest = hashlib.sha1(str(Path(data_dir).expanduser().resolve()).encode()).hexdigest()
        cache = str(tables / f"geom-{source}-{digest[:12]}")
    # The test split: the literature's test_mols.pkl (reference ensembles) when converted.
    names = ["test_mols", "test"] if split == "test" else [split]

    def read():
        for k, name in enumerate(names):
            try:
                return load_cached(cache, name)
            except FileNotFoundError:
                if k == len(names) - 1:
                    raise
        raise AssertionError("unreachable")

    try:
        records = read()
    except FileNotFoundError:
        if not data_dir:
            raise
        # geom_dir is the release's <DATASET>/ folder (split.npy, test files), next to
        # rdkit_folder/: its parent is the release root.
        named = Path(data_dir).expanduser()
        test_mols, test_smiles = named / "test_mols.pkl", named / "test_smiles.csv"
        convert_to_cache(
            named.parent,
            cache,
            dataset=source.split("_", 1)[1],
            split_file=next((named / f for f in SPLIT_FILES if (named / f).is_file()), None),
            max_conformers=data_cfg.get("max_conformers") or None,
            test_mols=test_mols if test_mols.is_file() else None,
            test_smiles=test_smiles if test_smiles.is_file() else None,
        )
        records = read()
    records = records["molecules"][: max_molecules or None]
    mols, positions, weights, smiles = [], [], [], []
    for r in records:
        mol = r["mol"]
        mols.append(mol)
        positions.append(np.asarray(r["positions"]))
        w = np.asarray(r["boltzmann_weights"], np.float64)
        weights.append(np.log(np.maximum(w, 1e-30)) if w.size and w.sum() > 0 else np.zeros(len(w)))
        smiles.append(r["smiles"])
    return mols, positions, weights, smiles


def load_conformer_data(data_cfg, split: str, *, progress: bool = False) -> dict[str, np.ndarray]:
    """The `ConformerData` table of one split of `data_cfg.source`.

    The table keeps up to `TABLE_AUTOMORPHISM_CAP` automorphisms per molecule (identity
    first); batches use the first `config.data.max_automorphisms` of them.

    Args:
      data_cfg: the `config.data` block (`source`, `max_atoms`, `automorphism_group`,
        `max_train` / `max_valid` / `max_test`, and for GEOM `geom_cache_dir` or
        `geom_dir`).
      split: "train", "val" or "test".
      progress: tqdm bars while building.

    Raises:
      ValueError: an unknown source or split.
      FileNotFoundError: the data is missing (the message says where to get it).
    """
    source = data_cfg.source
    if source not in SOURCES:
        raise ValueError(f"config.data.source must be one of {SOURCES}; got {source!r}.")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test'; got {split!r}.")
    limit = int(data_cfg.get(f"max_{'valid' if split == 'val' else split}", 0)) or None
    settings = {
        "source": source,
        "split": split,
        "limit": limit,
        "max_atoms": int(data_cfg.max_atoms),
        "group": data_cfg.automorphism_group,
        "cap": TABLE_AUTOMORPHISM_CAP,
        "origin": str(data_cfg.get("geom_cache_dir") or data_cfg.get("geom_dir") or "")
        if source != "qm9_conformers"
        else str(data_cfg.get("source_path", "")),
    }
    cache_dir = Path(data_cfg.get("cache_dir") or default_cache_dir() / "conformer_tables")
    cache_file = _table_cache_file(cache_dir.expanduser(), source, split, settings)
    if cache_file.exists():
        try:
            table = read_npz(cache_file)
            if int(table.pop("table_format", -1)) == TABLE_FORMAT:
                return table
        except (OSError, ValueError, EOFError):
            pass  # rebuilt below
    if source == "qm9_conformers":
        mols, positions, smiles = _qm9_mols(split, limit, data_cfg)
        weights = None
    else:
        mols, positions, weights, smiles = _geom_mols(
            source, split, limit, data_cfg, cache_dir.expanduser()
        )
    if not mols:
        raise ValueError(f"The {split} split of {source} has no molecules.")
    table = table_from_mols(
        mols,
        positions,
        weights,
        elements=SOURCE_ELEMENTS[source],
        max_atoms=int(data_cfg.max_atoms),
        automorphism_group=data_cfg.automorphism_group,
        max_automorphisms=TABLE_AUTOMORPHISM_CAP,
        smiles=smiles,
        progress=progress,
    )
    write_npz_atomic(cache_file, {**table, "table_format": np.array(TABLE_FORMAT)})
    return table


def mols_with_positions(table: dict[str, np.ndarray], molecule: int, positions) -> list:
    """RDKit Mols (one conformer each) of a table's molecule at the given coordinates.

    Args:
      table: a `ConformerData` table.
      molecule: the molecule's row.
      positions: `[C, N, 3]` (or `[C, n, 3]`) coordinates in the table's atom order.
    """
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    graph = graph_mol(table, molecule)
    n = int(table["num_atoms"][molecule])
    out = []
    for x in positions:
        m = Chem.Mol(graph)
        conf = Chem.Conformer(n)
        for i in range(n):
            conf.SetAtomPosition(i, Point3D(*map(float, x[i])))
        m.AddConformer(conf, assignId=True)
        out.append(m)
    return out


def reference_mols(table: dict[str, np.ndarray], molecule: int) -> list:
    """The table's conformers of one molecule as RDKit Mols (one conformer each).

    The graph is rebuilt from the table's atoms and bond types (hydrogens explicit), so the
    atom order is the table's.
    """
    start, stop = table["conformer_offsets"][molecule], table["conformer_offsets"][molecule + 1]
    return mols_with_positions(table, molecule, table["positions"][start:stop])


def graph_mol(table: dict[str, np.ndarray], molecule: int):
    """The RDKit graph (no conformer) of one molecule of a table, hydrogens explicit."""
    from rdkit import Chem

    types = {
        1: Chem.BondType.SINGLE,
        2: Chem.BondType.DOUBLE,
        3: Chem.BondType.TRIPLE,
        4: Chem.BondType.AROMATIC,
    }
    n = int(table["num_atoms"][molecule])
    rw = Chem.RWMol()
    z = table["atomic_numbers"][molecule]
    charges = table["formal_charges"][molecule]
    bonds = table["bond_types"][molecule]
    tags = table["chiral_tags"][molecule]
    chirality = {1: Chem.ChiralType.CHI_TETRAHEDRAL_CCW, -1: Chem.ChiralType.CHI_TETRAHEDRAL_CW}
    for i in range(n):
        atom = Chem.Atom(int(z[i]))
        atom.SetFormalCharge(int(charges[i]))
        # Bonds are added in ascending (i < j) order below, so every atom lists its
        # neighbours in ascending index: RDKit's tag equals the stored ascending tag.
        if int(tags[i]) in chirality:
            atom.SetChiralTag(chirality[int(tags[i])])
        atom.SetNoImplicit(True)
        atom.SetIsAromatic(bool(np.any(bonds[i, :n] == 4)))
        rw.AddAtom(atom)
    for i, j in zip(*np.nonzero(np.triu(bonds[:n, :n], 1)), strict=True):
        rw.AddBond(int(i), int(j), types[int(bonds[i, j])])
        if int(bonds[i, j]) == 4:
            rw.GetBondBetweenAtoms(int(i), int(j)).SetIsAromatic(True)
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # noqa: BLE001 - keep the graph as stored (RMSD needs no sanitising)
        mol.UpdatePropertyCache(strict=False)
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    return mol


def conformer_batch(
    table: dict[str, np.ndarray],
    rows: np.ndarray,
    *,
    automorphism_width: int,
    bank_size: int = 1,
) -> dict[str, np.ndarray]:
    """The arrays of a batch of conformer rows.

    Args:
      table: a `ConformerData` table.
      rows: `[B]` conformer row indices.
      automorphism_width: K, the padded number of automorphisms per molecule.
      bank_size: clean conformers in each example's target bank: 1 is the own orbit (the
        conformer itself); more adds the molecule's other conformers (highest Boltzmann
        weight first), padded with weight -inf.

    Returns:
      `positions [B, N, 3]`, `atom_features [B, N, F]`, `bond_types [B, N, N]` int32,
      `mask [B, N]`, `automorphisms [B, K, N]` int32, `automorphism_mask [B, K]`,
      `bank [B, Mb, N, 3]`, `bank_log_weights [B, Mb]`, `molecule [B]`.
    """
    rows = np.asarray(rows)
    mols = table["molecule"][rows]
    n_max = table["positions"].shape[1]
    mask = (np.arange(n_max)[None] < table["num_atoms"][mols][:, None]).astype(np.float32)
    perms, perm_mask = batch_automorphisms(table, mols, automorphism_width)
    positions = table["positions"][rows]
    bank = np.zeros((len(rows), bank_size, n_max, 3), np.float32)
    bank_w = np.full((len(rows), bank_size), -np.inf, np.float32)
    bank[:, 0], bank_w[:, 0] = positions, table["log_weight"][rows]
    if bank_size > 1:
        offsets = table["conformer_offsets"]
        for b, (r, m) in enumerate(zip(rows, mols, strict=True)):
            others = [k for k in range(offsets[m], offsets[m + 1]) if k != r]
            others = sorted(others, key=lambda k: -table["log_weight"][k])[: bank_size - 1]
            bank[b, 1 : 1 + len(others)] = table["positions"][others]
            bank_w[b, 1 : 1 + len(others)] = table["log_weight"][others]
    return {
        "positions": positions,
        "atom_features": table["atom_features"][mols],
        "bond_types": table["bond_types"][mols].astype(np.int32),
        "mask": mask,
        "automorphisms": perms,
        "automorphism_mask": perm_mask,
        "bank": bank,
        "bank_log_weights": bank_w,
        "molecule": mols.astype(np.int32),
    }


def train_batches(
    table: dict[str, np.ndarray],
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
    automorphism_width: int,
    bank_size: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """The batch of step `start_step + 1`, then the next...: a pure function of the step.

    Epoch `e` visits the conformer rows in the order of a fixed shuffle of `(seed, e)`
    (last partial batch dropped), so a resumed run sees the batches an uninterrupted one
    would.
    """
    total = len(table["positions"])
    per_epoch = total // batch_size
    if per_epoch == 0:
        raise ValueError(
            f"batch_size={batch_size} is larger than the training set ({total} conformers)."
        )
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(total)
        for i in range(offset, per_epoch):
            yield conformer_batch(
                table,
                order[i * batch_size : (i + 1) * batch_size],
                automorphism_width=automorphism_width,
                bank_size=bank_size,
            )
        epoch, offset = epoch + 1, 0
