"""Validity, uniqueness and novelty of 3D molecules with RDKit, as EDM defines them.

EDM (Hoogeboom et al., 2022; their `qm9/rdkit_functions.py`) turns each generated point
cloud into a molecular graph with the *same* distance-based bond orders as the stability
metric (`stability.bond_orders`), then:

- **validity**: the fraction of molecules whose graph passes RDKit sanitisation (valences,
  aromaticity). Atoms carry no formal charge; sanitisation may add implicit hydrogens to
  under-bonded atoms, so validity is more lenient than stability.
- **uniqueness**: for each valid molecule, the canonical SMILES of its largest connected
  fragment (hydrogens are graph atoms, so they appear as `[H]`); uniqueness is the number
  of distinct such SMILES over the number of valid molecules.
- **novelty**: the fraction of the distinct valid SMILES that are not among the training
  SMILES.

Bond orders are computed for the whole batch at once (vectorised, see `stability`); only
the RDKit molecule construction loops over molecules and their bonds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from rdkit import Chem

from symdiff_jax.metrics.stability import CHUNK, as_molecule_batch, bond_orders_checked

#: Datasets with their own EDM evaluation settings.
DATASETS = ("qm9", "geom")


def quiet_rdkit():
    """Silences RDKit's per-molecule sanitisation messages while the returned object lives."""
    from rdkit import rdBase

    return rdBase.BlockLogs()


def build_molecule(atomic_numbers: np.ndarray, orders: np.ndarray):
    """An RDKit molecule (unsanitised `RWMol`) from atoms and a bond-order matrix.

    Args:
      atomic_numbers: `[n]` atomic numbers of the real atoms only.
      orders: `[n, n]` symmetric bond orders in {0, 1, 2, 3} (e.g. from `bond_orders`).

    Returns:
      `rdkit.Chem.RWMol` with one atom per entry (no formal charges, no explicit hydrogen
      counts) and one bond per nonzero upper-triangular entry.
    """
    bond_types = {
        1: Chem.BondType.SINGLE,
        2: Chem.BondType.DOUBLE,
        3: Chem.BondType.TRIPLE,
    }
    mol = Chem.RWMol()
    for z in atomic_numbers:
        mol.AddAtom(Chem.Atom(int(z)))
    ii, jj = np.nonzero(np.triu(orders, 1))
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        mol.AddBond(i, j, bond_types[int(orders[i, j])])
    return mol


def mol_to_smiles(mol) -> str | None:
    """Sanitises `mol` in place and returns its canonical SMILES, or None if it fails."""
    try:
        Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError):
        return None
    return Chem.MolToSmiles(mol)


def largest_fragment_smiles(mol) -> str | None:
    """Canonical SMILES of the largest connected fragment of a sanitisable `mol`.

    Returns None when `mol` does not sanitise (an invalid molecule). Ties between equally
    large fragments go to the first in RDKit's fragment order.
    """
    if mol_to_smiles(mol) is None:
        return None
    fragments = Chem.GetMolFrags(mol, asMols=True)
    largest = max(fragments, default=mol, key=lambda f: f.GetNumAtoms())
    return mol_to_smiles(largest)


def xyz_smiles(
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    *,
    largest_fragment: bool = True,
    limit_bonds_to_one: bool = False,
) -> list[str | None]:
    """SMILES of each molecule's distance-derived graph (None where RDKit rejects it).

    Args:
      positions: `[B, N, 3]` (or `[N, 3]`) coordinates in Angstrom.
      atomic_numbers: `[B, N]` (or `[N]`) integer atomic numbers.
      mask: `[B, N]`, nonzero for real atoms (`None`: atomic number > 0).
      largest_fragment: keep only the largest fragment (validity / uniqueness); False gives
        the whole graph, which is what EDM stores for its training-set SMILES.
      limit_bonds_to_one: every bond single (EDM's GEOM-Drugs setting).

    Returns:
      A list of B canonical SMILES with explicit `[H]` atoms, or None for invalid graphs.
    """
    x, z, m = as_molecule_batch(positions, atomic_numbers, mask)
    out: list[str | None] = []
    _blocker = quiet_rdkit()  # noqa: F841 - active until it goes out of scope
    for s in range(0, x.shape[0], CHUNK):
        sl = slice(s, s + CHUNK)
        orders = bond_orders_checked(x[sl], z[sl], m[sl], limit_bonds_to_one)
        for zb, mb, ob in zip(z[sl], m[sl], orders, strict=True):
            keep = np.flatnonzero(mb)
            mol = build_molecule(zb[keep], ob[np.ix_(keep, keep)])
            out.append(largest_fragment_smiles(mol) if largest_fragment else mol_to_smiles(mol))
    return out


def canonical_smiles(smiles: str) -> str | None:
    """Puts a SMILES string in the form `xyz_smiles` produces, for novelty look-ups.

    Parses it, drops stereochemistry (a distance-derived graph has none), makes every
    hydrogen an explicit atom and writes RDKit's canonical SMILES. Formal charges are kept,
    so zwitterions never match a (charge-free) generated graph. Returns None for SMILES
    RDKit cannot parse.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(Chem.AddHs(mol))


def canonical_smiles_set(smiles: Iterable[str]) -> frozenset[str]:
    """`canonical_smiles` of every string, as a set (unparsable strings are dropped)."""
    _blocker = quiet_rdkit()  # noqa: F841 - active until it goes out of scope
    out = [canonical_smiles(s) for s in smiles if s]
    return frozenset(s for s in out if s is not None)


def rdkit_metrics(
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    train_smiles: Sequence[str] | frozenset[str] | None = None,
    *,
    canonicalise_train: bool = True,
    limit_bonds_to_one: bool = False,
    dataset: str = "qm9",
) -> dict[str, float | None]:
    """Validity, uniqueness and novelty of generated molecules (EDM's definitions).

    Args:
      positions: `[B, N, 3]` coordinates in Angstrom (numpy or JAX).
      atomic_numbers: `[B, N]` integer atomic numbers.
      mask: `[B, N]`, nonzero for real atoms (`None`: atomic number > 0).
      train_smiles: training-set SMILES for novelty, or None to skip novelty. With
        `canonicalise_train=True` (default) each string goes through `canonical_smiles`
        (e.g. the `smiles` field of `symdiff_jax.data.load_qm9("train")`); pass
        `canonicalise_train=False` for strings already in `xyz_smiles` form, or a
        `frozenset` from `canonical_smiles_set` to reuse one across calls. EDM's own
        reference is the training molecules' distance-derived graphs,
        `symdiff_jax.data.load_qm9_graph_smiles("train")` with `canonicalise_train=False`.
      canonicalise_train: see `train_smiles`.
      limit_bonds_to_one: every bond single (EDM's GEOM-Drugs setting).
      dataset: "qm9" or "geom"; "geom" scores as EDM's GEOM-Drugs evaluation does
        (`build_xae_molecule` with `limit_bonds_to_one=True`: every bond single).

    Returns:
      `{"validity": valid / B, "uniqueness": distinct valid SMILES / valid,
      "novelty": distinct valid SMILES not in train / distinct valid SMILES, or None}`.
      Uniqueness and novelty are 0.0 when no molecule is valid (as EDM reports them).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}; got {dataset!r}.")
    limit_bonds_to_one = limit_bonds_to_one or dataset == "geom"
    smiles = xyz_smiles(positions, atomic_numbers, mask, limit_bonds_to_one=limit_bonds_to_one)
    valid = [s for s in smiles if s is not None]
    validity = len(valid) / len(smiles) if smiles else float("nan")
    unique = set(valid)
    uniqueness = len(unique) / len(valid) if valid else 0.0
    novelty: float | None = None
    if train_smiles is not None:
        if isinstance(train_smiles, frozenset) or not canonicalise_train:
            reference = (
                train_smiles
                if isinstance(train_smiles, frozenset)
                else {s for s in train_smiles if s}
            )
        else:
            reference = canonical_smiles_set(train_smiles)
        novelty = sum(s not in reference for s in unique) / len(unique) if unique else 0.0
    return {"validity": validity, "uniqueness": uniqueness, "novelty": novelty}


__all__ = [
    "DATASETS",
    "build_molecule",
    "canonical_smiles",
    "canonical_smiles_set",
    "largest_fragment_smiles",
    "mol_to_smiles",
    "rdkit_metrics",
    "xyz_smiles",
]
