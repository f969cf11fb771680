"""Graph featurisation of GEOM molecules: element tables, bond and hybridisation codes.

`graph_features` turns an RDKit molecule into padded per-atom and per-pair arrays.
Graph featurisation (`graph_features`) follows the QM9 conventions of this package: real
atoms first, then padding; atomic numbers 0 and masks 0 on padded slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rdkit import Chem

from symdiff_jax.data.features import edge_mask as _edge_mask

__all__ = [
    "BOND_ORDERS",
    "BOND_TYPE_NAMES",
    "GEOM_DRUGS_ELEMENTS",
    "GEOM_QM9_ELEMENTS",
    "HYBRIDISATIONS",
    "graph_features",
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
