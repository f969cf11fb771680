"""Graph automorphism groups Aut(G) of molecular graphs, as atom permutations.

Paper 000 (section 4.2) treats a conformer as a point cloud whose atoms are labelled by a
molecular graph `G = (V, E)`; the symmetry group of the conformer-generation task includes
`Aut(G)`, the bijections of `V` that preserve adjacency (and, for molecules, atom and bond
labels). This module enumerates that finite group so it can be averaged over exactly
(DESIGN section 4, estimator 2) or used to align conformers.

Convention (shared by every function here). A permutation `perm [N]` is an automorphism
when

    adjacency[perm][:, perm] == adjacency   and   labels[perm] == labels,

i.e. `adjacency[perm[i], perm[j]] == adjacency[i, j]` for all `i, j`. It acts on per-atom
arrays like `symdiff_jax.groups.permute(a, perm, axis=-2)`: `out_i = a_{perm[i]}`, so atom
`i` of the output takes the coordinates / features of atom `perm[i]`, which has the same
label and the same neighbourhood. For RDKit's self-match `m = mol.GetSubstructMatch(mol)`,
`m[i]` is the atom of the molecule matched by query atom `i`; that is exactly a `perm` in the
convention above (checked in the tests against brute force). Because automorphisms form a
group, the set of returned permutations is the same under the inverse convention; only
individual rows would be inverted.

All functions are NumPy (host) code: enumerating Aut(G) is combinatorial and done once per
molecule, before anything is jitted. Pass the result to JAX with `jnp.asarray`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from rdkit import Chem

# RDKit's GetSubstructMatches takes an unsigned int; this is "no cap" in practice.
_NO_CAP = 2**31 - 1


def _is_rdkit_mol(obj: Any) -> bool:
    return isinstance(obj, Chem.Mol)


def _check_graph(adjacency: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    adjacency = np.asarray(adjacency)
    labels = np.asarray(labels)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be a square [N, N] matrix; got shape {adjacency.shape}.")
    if labels.shape != (adjacency.shape[0],):
        raise ValueError(
            f"labels must have shape [N] = ({adjacency.shape[0]},) to match adjacency "
            f"{adjacency.shape}; got shape {labels.shape}."
        )
    if not np.issubdtype(adjacency.dtype, np.integer) and not np.issubdtype(
        adjacency.dtype, np.bool_
    ):
        raise ValueError(
            "adjacency must hold integer bond labels (0 = no bond); got dtype "
            f"{adjacency.dtype}. Convert e.g. bond orders 1.5 to distinct integers first."
        )
    if not np.array_equal(adjacency, adjacency.T):
        raise ValueError("adjacency must be symmetric (an undirected graph); it is not.")
    return adjacency.astype(np.int64), labels


def _hydrogen_count(atom: Any) -> int:
    try:
        return atom.GetTotalNumHs(includeNeighbors=False)
    except RuntimeError:  # property cache not computed (unsanitised molecule)
        return atom.GetNumExplicitHs()


def molecule_graph(mol: Any, *, use_features: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The labelled graph of an RDKit molecule: integer adjacency and atom labels.

    Every atom of `mol` is a node (hydrogens are nodes only if they are explicit atoms, e.g.
    after `Chem.AddHs`; implicit hydrogens enter the label as a count).

    Args:
      mol: an `rdkit.Chem.Mol`.
      use_features: if True, atom labels are (atomic number, isotope, formal charge,
        aromaticity, hybridisation, number of implicit/explicit-count hydrogens) and bond
        labels are RDKit bond types; if False, atom labels are atomic numbers only and every
        bond is the same edge label 1 (the element-labelled connectivity graph).

    Returns:
      `(adjacency [N, N] int32, labels [N] int32)`: `adjacency[i, j]` is 0 without a bond,
      otherwise `int(bond.GetBondType()) + 1` (use_features) or 1; `labels` are class ids, equal
      exactly when the atoms' features are equal.
    """
    n = mol.GetNumAtoms()
    adjacency = np.zeros((n, n), np.int32)
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        # BondType.UNSPECIFIED is 0: shift by one so that every bond is nonzero.
        adjacency[i, j] = adjacency[j, i] = int(bond.GetBondType()) + 1 if use_features else 1
    features = []
    for atom in mol.GetAtoms():
        if use_features:
            features.append(
                (
                    atom.GetAtomicNum(),
                    atom.GetIsotope(),
                    atom.GetFormalCharge(),
                    int(atom.GetIsAromatic()),
                    int(atom.GetHybridization()),
                    _hydrogen_count(atom),
                )
            )
        else:
            features.append((atom.GetAtomicNum(),))
    classes = {f: k for k, f in enumerate(sorted(set(features)))}
    labels = np.array([classes[f] for f in features], np.int32)
    return adjacency, labels


def _label_molecule(adjacency: np.ndarray, labels: np.ndarray):
    """An RDKit molecule whose self-matches are exactly the labelled-graph automorphisms.

    Every node becomes a carbon atom whose isotope is its label class + 1 (RDKit only
    matches atoms with equal nonzero isotopes); every distinct edge label becomes a distinct
    RDKit bond type (RDKit matches bonds by type).
    """
    _, label_ids = np.unique(labels, return_inverse=True)
    edge_values = np.unique(adjacency[adjacency != 0])
    bond_types = [
        Chem.BondType.SINGLE,
        Chem.BondType.DOUBLE,
        Chem.BondType.TRIPLE,
        Chem.BondType.QUADRUPLE,
        Chem.BondType.QUINTUPLE,
        Chem.BondType.HEXTUPLE,
        Chem.BondType.AROMATIC,
        Chem.BondType.IONIC,
        Chem.BondType.HYDROGEN,
        Chem.BondType.THREECENTER,
    ]
    if len(edge_values) > len(bond_types):
        raise ValueError(
            f"the graph has {len(edge_values)} distinct edge labels; at most "
            f"{len(bond_types)} are supported. Use automorphisms_from_adjacency for such graphs."
        )
    bond_of = {int(v): bond_types[k] for k, v in enumerate(edge_values)}
    rw = Chem.RWMol()
    for k in label_ids.reshape(-1):
        atom = Chem.Atom(6)
        atom.SetIsotope(int(k) + 1)
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    ii, jj = np.nonzero(np.triu(adjacency, 1))
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        rw.AddBond(i, j, bond_of[int(adjacency[i, j])])
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    return mol


def _describe(obj: Any, n: int) -> str:
    if _is_rdkit_mol(obj):
        name = obj.GetProp("_Name") if obj.HasProp("_Name") else ""
        try:
            smiles = Chem.MolToSmiles(obj)
        except Exception:  # noqa: BLE001 - only for the message
            smiles = "?"
        return f"molecule {name + ' ' if name else ''}{smiles} ({n} atoms)"
    return f"graph with {n} nodes"


def graph_automorphisms(
    mol_or_graph: Any,
    *,
    use_features: bool = True,
    max_count: int | None = None,
    warn: bool = True,
) -> np.ndarray:
    """All automorphisms of a molecular graph, from RDKit's self substructure match.

    Uses `mol.GetSubstructMatches(mol, uniquify=False, useChirality=False, maxMatches=...)`
    on a copy whose atoms/bonds carry the labels of `molecule_graph` (so matched atoms agree
    in every feature, not only in the features RDKit's default matcher compares); each match
    is then checked with `is_automorphism`. Hydrogens are included when they are explicit
    atoms of `mol`. Chirality is ignored (mirror-image relabellings are kept).

    Args:
      mol_or_graph: an `rdkit.Chem.Mol`, or a pair `(adjacency [N, N] int, labels [N])` with
        0 for "no edge" and any other integer an edge label.
      use_features: for a molecule, compare atoms by element, isotope, formal charge,
        aromaticity, hybridisation and hydrogen count, and bonds by type; if False, by
        element and connectivity only (see `molecule_graph`). Ignored for a graph pair.
      max_count: at most this many permutations are returned. None: all of them (which can
        be huge: neopentane with hydrogens has 31,104).
      warn: emit a `RuntimeWarning` naming the molecule and the cap when the group is larger
        than `max_count`.

    Returns:
      `[K, N]` int32, one automorphism per row in the convention of the module docstring
      (`permute(x, perm)` gives `out_i = x_{perm[i]}`), the identity first, the others in
      RDKit's match order. If the group has more than `max_count` elements, the rows are the
      identity followed by the first `max_count - 1` other matches RDKit finds: a subset, not
      a subgroup.
    """
    if max_count is not None and int(max_count) < 1:
        raise ValueError(f"max_count must be >= 1 (or None for no cap); got {max_count}.")
    if _is_rdkit_mol(mol_or_graph):
        adjacency, labels = molecule_graph(mol_or_graph, use_features=use_features)
    elif isinstance(mol_or_graph, tuple | list) and len(mol_or_graph) == 2:
        adjacency, labels = _check_graph(*mol_or_graph)
    else:
        raise ValueError(
            "mol_or_graph must be an rdkit.Chem.Mol or a pair (adjacency [N, N], labels [N]); "
            f"got {type(mol_or_graph).__name__}."
        )
    n = adjacency.shape[0]
    identity = np.arange(n, dtype=np.int32)
    if n == 0:
        return identity[None]
    query = _label_molecule(adjacency, labels)
    request = _NO_CAP if max_count is None else int(max_count) + 1
    matches = query.GetSubstructMatches(
        query, uniquify=False, useChirality=False, maxMatches=request
    )
    perms = [
        np.asarray(m, np.int32)
        for m in matches
        if not np.array_equal(m, identity) and is_automorphism(m, adjacency, labels)
    ]
    perms.insert(0, identity)
    if max_count is not None and len(perms) > max_count:
        if warn:
            warnings.warn(
                f"graph_automorphisms: the automorphism group of the "
                f"{_describe(mol_or_graph, n)} has more than max_count={max_count} elements; "
                f"returning the identity and the first {max_count - 1} other matches (a "
                "subset, not a subgroup). Raise max_count for the whole group.",
                RuntimeWarning,
                stacklevel=2,
            )
        perms = perms[:max_count]
    return np.stack(perms).astype(np.int32)


def heavy_atom_automorphisms(
    mol: Any, *, max_count: int | None = None, warn: bool = True
) -> np.ndarray:
    """The automorphisms of the heavy-atom graph, lifted to a molecule with explicit hydrogens.

    `Aut(G)` of a molecule with explicit hydrogens is the semidirect product of the swaps of
    hydrogens bound to the same heavy atom (`prod_a S_{k_a}`, 6 per methyl group, 31,104
    elements for neopentane) and the automorphisms of the heavy-atom graph labelled with
    hydrogen counts. This returns the second factor as a subgroup of `Aut(G)`: each
    automorphism `s` of the heavy-atom graph (`graph_automorphisms` of `Chem.RemoveHs(mol)`)
    is lifted by sending the hydrogens of heavy atom `a`, in index order, to the hydrogens of
    `s(a)` in index order. Lifts of this form compose to lifts of the same form, so the rows
    form a group (of the heavy-atom group's order), and every heavy-atom relabelling of
    `Aut(G)` appears exactly once. Heavy-atom RMSD (the conformer metrics) sees exactly this
    group; paper 000's conformer code likewise keeps only automorphisms that move a heavy
    atom.

    Molecules whose hydrogens are not all bound to exactly one heavy atom (H2, hydrides
    RDKit keeps) fall back to `graph_automorphisms(mol)` (the full group).

    Args:
      mol: an `rdkit.Chem.Mol` with explicit hydrogens.
      max_count: cap on the number of rows (see `graph_automorphisms`).
      warn: warn when the cap truncates the group.

    Returns:
      `[K, N]` int32 automorphisms of `mol` (identity first), convention of the module.
    """
    if not _is_rdkit_mol(mol):
        raise ValueError(
            f"heavy_atom_automorphisms takes an rdkit.Chem.Mol; got {type(mol).__name__}."
        )
    n = mol.GetNumAtoms()
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() != 1]
    hydrogens: dict[int, list[int]] = {a: [] for a in heavy}
    simple = bool(heavy)
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() != 1:
            continue
        nbrs = [nb.GetIdx() for nb in atom.GetNeighbors()]
        if len(nbrs) != 1 or nbrs[0] not in hydrogens:
            simple = False
            break
        hydrogens[nbrs[0]].append(atom.GetIdx())
    if not simple:
        return graph_automorphisms(mol, max_count=max_count, warn=warn)
    # The heavy-atom graph with hydrogen counts as part of the labels.
    stripped = Chem.RWMol(mol)
    for idx in sorted((i for i in range(n) if i not in hydrogens), reverse=True):
        stripped.RemoveAtom(idx)
    for k, a in enumerate(heavy):
        stripped.GetAtomWithIdx(k).SetNumExplicitHs(len(hydrogens[a]))
        stripped.GetAtomWithIdx(k).SetNoImplicit(True)
    stripped = stripped.GetMol()
    stripped.UpdatePropertyCache(strict=False)
    perms = graph_automorphisms(stripped, max_count=max_count, warn=False)
    if warn and max_count is not None and len(perms) == max_count:
        full = graph_automorphisms(stripped, max_count=max_count + 1, warn=False)
        if len(full) > max_count:
            warnings.warn(
                f"heavy_atom_automorphisms: the heavy-atom automorphism group of the "
                f"{_describe(mol, n)} has more than max_count={max_count} elements; returning "
                "a subset. Raise max_count for the whole group.",
                RuntimeWarning,
                stacklevel=2,
            )
    out = np.tile(np.arange(n, dtype=np.int32), (len(perms), 1))
    heavy_arr = np.asarray(heavy)
    for row, sigma in zip(out, perms, strict=True):
        for i, j in enumerate(sigma):
            a, b = heavy_arr[i], heavy_arr[j]
            row[a] = b
            for ha, hb in zip(hydrogens[a], hydrogens[b], strict=True):
                row[ha] = hb
    return out


def is_automorphism(perm: Any, adjacency: Any, labels: Any) -> bool:
    """Whether `perm` is a label- and edge-preserving bijection of the graph's nodes.

    Args:
      perm: `[N]` integer sequence.
      adjacency: `[N, N]` symmetric integer matrix (0 = no edge, else the edge label).
      labels: `[N]` node labels.

    Returns:
      True iff `perm` is a permutation of `0..N-1`, `labels[perm] == labels` and
      `adjacency[perm][:, perm] == adjacency`.
    """
    adjacency, labels = _check_graph(adjacency, labels)
    perm = np.asarray(perm)
    n = adjacency.shape[0]
    if perm.shape != (n,):
        raise ValueError(f"perm must have shape ({n},) to act on {n} nodes; got {perm.shape}.")
    if not np.array_equal(np.sort(perm), np.arange(n)):
        return False
    return bool(
        np.array_equal(labels[perm], labels)
        and np.array_equal(adjacency[np.ix_(perm, perm)], adjacency)
    )


def automorphisms_from_adjacency(adjacency: Any, labels: Any) -> np.ndarray:
    """All automorphisms of a small labelled graph by backtracking search (a reference).

    Builds `perm` one node at a time, trying images in increasing order and keeping a
    partial assignment only if the new node has the same label and degree profile as its
    image and every edge label to the nodes already placed is preserved. This enumerates
    exactly the permutations `itertools.permutations(range(N))` would accept, without
    visiting the rejected ones; it needs no RDKit and is meant for small graphs and tests.

    Args:
      adjacency: `[N, N]` symmetric integer matrix (0 = no edge, else the edge label).
      labels: `[N]` node labels.

    Returns:
      `[K, N]` int32 automorphisms in lexicographic order (so the identity is first).
    """
    adjacency, labels = _check_graph(adjacency, labels)
    n = adjacency.shape[0]
    if n == 0:
        return np.zeros((1, 0), np.int32)
    # Node invariant: label and the multiset of incident edge labels.
    profile = [
        (labels[i].item(), tuple(sorted(adjacency[i][adjacency[i] != 0].tolist())))
        for i in range(n)
    ]
    candidates = [[j for j in range(n) if profile[j] == profile[i]] for i in range(n)]
    out: list[list[int]] = []
    perm = [0] * n
    used = [False] * n

    def extend(i: int) -> None:
        if i == n:
            out.append(list(perm))
            return
        for j in candidates[i]:
            if used[j]:
                continue
            if any(adjacency[i, k] != adjacency[j, perm[k]] for k in range(i)):
                continue
            perm[i], used[j] = j, True
            extend(i + 1)
            used[j] = False

    extend(0)
    return np.asarray(out, np.int32).reshape(-1, n)


def pad_permutations(perms: Sequence[Sequence[int]] | np.ndarray, max_atoms: int) -> np.ndarray:
    """Extends permutations of the first `n` atoms to `max_atoms`, fixing the padded atoms.

    Args:
      perms: `[K, n]` permutations (e.g. from `graph_automorphisms`).
      max_atoms: the padded size `N >= n` of the batch arrays they will act on.

    Returns:
      `[K, max_atoms]` int32 with `out[:, :n] = perms` and `out[:, i] = i` for `i >= n`, so
      `permute(x, out)` leaves padded rows in place.
    """
    perms = np.asarray(perms)
    if perms.ndim != 2:
        raise ValueError(f"perms must have shape [K, n]; got shape {perms.shape}.")
    k, n = perms.shape
    if max_atoms < n:
        raise ValueError(
            f"max_atoms={max_atoms} is smaller than the permutation length n={n}; "
            "pass max_atoms >= n."
        )
    out = np.broadcast_to(np.arange(max_atoms, dtype=np.int32), (k, max_atoms)).copy()
    out[:, :n] = perms
    return out
