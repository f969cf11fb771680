"""Molecular graphs as padded arrays: the condition of a conformer generator.

`molecule_arrays(mol, ...)` turns an RDKit molecule with explicit hydrogens into the
per-atom features, bond types, chirality tags and automorphism group a conformer model
and its symmetrised target need; `stack_molecules` pads a list of them into one table
with the automorphisms stored ragged (`aut_offsets`), and `batch_automorphisms` pads the
groups of a batch to a fixed width with a row mask.

Atom features (`atom_feature_names`): element one-hot, aromaticity, hybridisation one-hot
(other, S, SP, SP2, SP3, SP3D, SP3D2), formal charge one-hot (-1, 0, +1), heavy degree
one-hot (0..4), attached hydrogens one-hot (0..4), ring membership and membership of a
ring of size 3, 4, 5, 6, 7 and 8. Every feature is invariant under a relabelling of the
atoms (no chirality tag enters: its sign depends on the neighbour order); bond types enter
the networks as edge inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from symdiff_jax.data.geom_features import HYBRIDISATIONS, graph_features
from symdiff_jax.groups.automorphisms import graph_automorphisms, heavy_atom_automorphisms

__all__ = [
    "AUTOMORPHISM_GROUPS",
    "ConformerGraph",
    "NUM_BOND_TYPES",
    "atom_feature_names",
    "batch_automorphisms",
    "bond_one_hot",
    "molecule_arrays",
    "stack_molecules",
]

#: Which automorphisms of the molecular graph the target averages over:
#: "heavy": the heavy-atom automorphisms lifted to the hydrogens
#: (`heavy_atom_automorphisms`, the group heavy-atom RMSD sees); "full": all of Aut(G),
#: hydrogen swaps included; "none": the identity only.
AUTOMORPHISM_GROUPS: tuple[str, ...] = ("heavy", "full", "none")
#: Bond type codes 1..4 (single, double, triple, aromatic; `BOND_TYPE_NAMES`), 0 = none.
NUM_BOND_TYPES: int = 4
_RING_SIZES = (3, 4, 5, 6, 7, 8)
_CHARGES = (-1, 0, 1)
_MAX_DEGREE = 4


class ConformerGraph(NamedTuple):
    """The condition of a conformer model: `atom_features [B, N, F]`, `bond_types [B, N, N]`."""

    atom_features: jax.Array
    bond_types: jax.Array


def atom_feature_names(elements: Sequence[str]) -> list[str]:
    """Names of the columns of `molecule_arrays(...)["atom_features"]`, in order."""
    return (
        [f"element={e}" for e in elements]
        + ["aromatic"]
        + [f"hybridisation={h}" for h in ("other",) + HYBRIDISATIONS]
        + [f"formal_charge={c:+d}" for c in _CHARGES]
        + [f"heavy_degree={d}" for d in range(_MAX_DEGREE + 1)]
        + [f"num_hs={d}" for d in range(_MAX_DEGREE + 1)]
        + ["in_ring"]
        + [f"in_ring_of_{k}" for k in _RING_SIZES]
    )


def _one_hot(values: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros(values.shape + (width,), np.float32)
    np.put_along_axis(out, np.clip(values, 0, width - 1)[..., None], 1.0, axis=-1)
    return out


def _ascending_tags(mol: Any, max_atoms: int) -> np.ndarray:
    from symdiff_jax.conformers.chirality import chiral_tags_ascending

    tags = np.zeros(max_atoms, np.int8)
    tags[: mol.GetNumAtoms()] = chiral_tags_ascending(mol)
    return tags


def molecule_arrays(
    mol: Any,
    *,
    elements: Sequence[str],
    max_atoms: int,
    automorphism_group: str = "heavy",
    max_automorphisms: int | None = 64,
) -> dict[str, Any]:
    """The arrays of one molecular graph (atoms in the Mol's order, then padding).

    Args:
      mol: `rdkit.Chem.Mol` with explicit hydrogens (its conformers are ignored).
      elements: element symbols of the one-hot (e.g. `GEOM_QM9_ELEMENTS`).
      max_atoms: pad to this many atoms N.
      automorphism_group: one of `AUTOMORPHISM_GROUPS`.
      max_automorphisms: cap on the automorphisms kept (None: all); over the cap a subset
        is kept (identity first) and counted in `"automorphisms_capped"`.

    Returns:
      `{"atom_features" [N, F] float32, "bond_types" [N, N] int8, "atomic_numbers" [N]
      int32, "chiral_tags" [N] int8 (+1 CCW, -1 CW, 0, relative to the neighbours in
      ascending atom index: `symdiff_jax.conformers.chirality`), "formal_charges" [N] int8,
      "num_atoms" int,
      "automorphisms" [K, N] int16 (padded atoms fixed), "automorphisms_capped" bool}`.

    Raises:
      ValueError: an element not in `elements`, more than `max_atoms` atoms, an unknown
        `automorphism_group`, or a bond type other than single/double/triple/aromatic.
    """
    if automorphism_group not in AUTOMORPHISM_GROUPS:
        raise ValueError(
            f"automorphism_group must be one of {AUTOMORPHISM_GROUPS}; got {automorphism_group!r}."
        )
    g = graph_features(mol, elements=elements, max_atoms=max_atoms)
    n = int(g["num_atoms"])
    bonds = g["bond_types"]
    is_h = g["atomic_numbers"] == 1
    heavy_degree = ((bonds > 0) & ~is_h[None, :]).sum(-1)
    num_hs = ((bonds > 0) & is_h[None, :]).sum(-1)
    ring_info = mol.GetRingInfo()
    rings = np.zeros((max_atoms, 1 + len(_RING_SIZES)), np.float32)
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        rings[i, 0] = float(atom.IsInRing())
        for k, size in enumerate(_RING_SIZES):
            rings[i, 1 + k] = float(ring_info.IsAtomInRingOfSize(i, size))
    charge_index = np.searchsorted(np.asarray(_CHARGES), np.clip(g["formal_charges"], -1, 1))
    features = (
        np.concatenate(
            [
                g["one_hot"],
                g["aromatic"][:, None],
                _one_hot(g["hybridisation"], len(HYBRIDISATIONS) + 1),
                _one_hot(charge_index, len(_CHARGES)),
                _one_hot(heavy_degree, _MAX_DEGREE + 1),
                _one_hot(num_hs, _MAX_DEGREE + 1),
                rings,
            ],
            axis=-1,
        )
        * g["mask"][:, None]
    )
    if automorphism_group == "none":
        perms = np.arange(n, dtype=np.int32)[None]
    else:
        fn = heavy_atom_automorphisms if automorphism_group == "heavy" else graph_automorphisms
        cap = None if max_automorphisms is None else int(max_automorphisms) + 1
        perms = fn(mol, max_count=cap, warn=False)
    capped = max_automorphisms is not None and len(perms) > int(max_automorphisms)
    if capped:
        perms = perms[: int(max_automorphisms)]
    full = np.tile(np.arange(max_atoms, dtype=np.int16), (len(perms), 1))
    full[:, :n] = perms
    return {
        "atom_features": features.astype(np.float32),
        "bond_types": bonds.astype(np.int8),
        "atomic_numbers": g["atomic_numbers"].astype(np.int32),
        "chiral_tags": _ascending_tags(mol, max_atoms),
        "formal_charges": g["formal_charges"].astype(np.int8),
        "num_atoms": n,
        "automorphisms": full,
        "automorphisms_capped": bool(capped),
    }


def stack_molecules(graphs: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One table from `molecule_arrays` outputs; automorphisms stored ragged.

    Returns:
      `atom_features [M, N, F]`, `bond_types [M, N, N]`, `atomic_numbers [M, N]`,
      `chiral_tags [M, N]`, `formal_charges [M, N]`, `num_atoms [M]`, `automorphisms [sum K_m, N]` int16,
      `aut_offsets [M + 1]` int64 (molecule m's rows are `aut_offsets[m]:aut_offsets[m+1]`),
      `automorphisms_capped [M]` bool.
    """
    if not graphs:
        raise ValueError("stack_molecules needs at least one molecule.")
    counts = np.array([len(g["automorphisms"]) for g in graphs], np.int64)
    out = {
        k: np.stack([g[k] for g in graphs])
        for k in ("atom_features", "bond_types", "atomic_numbers", "chiral_tags", "formal_charges")
    }
    out["num_atoms"] = np.array([g["num_atoms"] for g in graphs], np.int32)
    out["automorphisms"] = np.concatenate([g["automorphisms"] for g in graphs])
    out["aut_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    out["automorphisms_capped"] = np.array([g["automorphisms_capped"] for g in graphs])
    return out


def batch_automorphisms(
    table: dict[str, np.ndarray], molecules: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The automorphism groups of `molecules`, padded to `width` rows.

    Args:
      table: a `stack_molecules` table.
      molecules: `[B]` molecule indices.
      width: K, the padded group size (groups larger than K are cut to their first K
        rows, identity first).

    Returns:
      `(perms [B, K, N] int32, perm_mask [B, K] float32)`; padding rows are the identity
      with mask 0.
    """
    offsets = table["aut_offsets"]
    n = table["automorphisms"].shape[1]
    perms = np.tile(np.arange(n, dtype=np.int32), (len(molecules), width, 1))
    mask = np.zeros((len(molecules), width), np.float32)
    for b, m in enumerate(np.asarray(molecules)):
        rows = table["automorphisms"][offsets[m] : offsets[m + 1]][:width]
        perms[b, : len(rows)] = rows
        mask[b, : len(rows)] = 1.0
    return perms, mask


def bond_one_hot(bond_types):
    """`[..., N, N, NUM_BOND_TYPES]` float one-hot of bond codes 1..4 (0 = no bond: all zero).

    Works on numpy and JAX arrays.
    """
    import jax.numpy as jnp

    codes = jnp.asarray(bond_types).astype(jnp.int32)
    return (codes[..., None] == jnp.arange(1, NUM_BOND_TYPES + 1)).astype(jnp.float32)
