"""Chirality of generated conformers: tetrahedral centres, signed volumes, parity correction.

An O(3)-equivariant (or O(3)-symmetrised) conformer generator cannot tell a molecule from
its mirror image: conditioned on the graph it samples both enantiomers with equal
probability. Paper 000 therefore offers two options for conformers (section 4.2): the
SO(3) group, whose generator can learn handedness, or O(3) followed by a *parity
correction*: after sampling, compare the handedness of each conformer at the tagged
stereocentres with the tags of the graph and reflect the conformer when most centres are
wrong. A reflection (any orthogonal map with determinant -1) turns every signed volume
around, so a conformer whose centres are all inverted becomes the wanted stereoisomer;
one with a mix of right and wrong centres is a diastereomer that no rigid map repairs, and
the majority vote leaves it as close as possible.

Conventions (RDKit's, checked against `Chem.AssignStereochemistryFrom3D`):

- A tag is +1 (`CHI_TETRAHEDRAL_CCW`), -1 (`CHI_TETRAHEDRAL_CW`) or 0 (none), relative to
  an order of the centre's neighbours. RDKit orders them by the order in which the bonds
  were added to the Mol. Arrays (`bond_types [N, N]`) lose that order, so **here the
  neighbours are taken in ascending atom index**; `chiral_tags_ascending` converts the tags
  of any RDKit Mol to that order (a tag changes sign under an odd permutation of the
  neighbours). Mols rebuilt from arrays by adding bonds in ascending `(i < j)` order (as
  `symdiff_jax.conformers.qm9_conformers.as_rdkit_mol` does) already list every atom's neighbours in
  ascending order, so their RDKit tags are ascending tags.
- With neighbours `a, b, c` (the first three of that order) and centre `o`, the signed
  volume is `V = (x_a - x_o) . ((x_b - x_o) x (x_c - x_o))`; `V > 0` is CCW (+1) and
  `V < 0` is CW (-1), as in RDKit's assignment from 3D. For four neighbours the fourth
  one is implied (it sits opposite the other three); a centre with three neighbours (a
  ring nitrogen, or an implicit hydrogen) uses the same formula, its missing neighbour
  written as -1 in `neighbours[:, 3]`.

`chiral_centres`, `chiral_tags_ascending` and `pad_chiral_centres` are host-side NumPy /
RDKit code for data preparation; `signed_volumes`, `parity_votes`, `needs_reflection` and
`parity_correct` are pure `jax.numpy` (jit / vmap friendly).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

CCW = 1
CW = -1
MISSING_NEIGHBOUR = -1


def _permutation_parity(order: Sequence[int]) -> int:
    """+1 for an even permutation that sorts `order` (distinct ints), -1 for odd."""
    seq = list(order)
    sign = 1
    for i in range(len(seq)):
        for j in range(i + 1, len(seq)):
            if seq[i] > seq[j]:
                sign = -sign
    return sign


def chiral_tags_ascending(mol: Any) -> np.ndarray:
    """Tetrahedral chiral tags of an RDKit Mol, relative to ascending neighbour index.

    RDKit's `CHI_TETRAHEDRAL_CCW` / `CW` refer to the order of the atom's bonds in the Mol
    (`atom.GetBonds()`); this re-expresses them for the neighbours sorted by atom index
    (the order `chiral_centres` uses), flipping the sign when the sorting permutation is
    odd. Other chiral types (allene-like, square planar, ...) map to 0.

    Args:
      mol: `rdkit.Chem.Mol` whose tags are set (from SMILES, or from a conformer through
        `Chem.AssignStereochemistryFrom3D`).

    Returns:
      `[n]` int32: +1 CCW, -1 CW, 0 none, in the ascending-neighbour convention.
    """
    from rdkit import Chem

    sign = {Chem.ChiralType.CHI_TETRAHEDRAL_CCW: CCW, Chem.ChiralType.CHI_TETRAHEDRAL_CW: CW}
    out = np.zeros(mol.GetNumAtoms(), np.int32)
    for atom in mol.GetAtoms():
        tag = sign.get(atom.GetChiralTag(), 0)
        if tag:
            i = atom.GetIdx()
            order = [b.GetOtherAtomIdx(i) for b in atom.GetBonds()]
            out[i] = tag * _permutation_parity(order)
    return out


def chiral_centres(chiral_tags: Any, bond_types: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tagged tetrahedral centres of one molecule, with their neighbours and signs.

    Args:
      chiral_tags: `[N]` ints, +1 CCW / -1 CW / 0 none, relative to the centre's
        neighbours in ascending atom index (see the module docstring and
        `chiral_tags_ascending`); padding atoms carry 0.
      bond_types: `[N, N]` bond codes or orders, nonzero where two atoms are bonded
        (symmetric; padding rows zero).

    Returns:
      `(centres [C], neighbours [C, 4], signs [C])`, int32: the tagged atoms in ascending
      order, their bonded neighbours in ascending index (a centre with three neighbours has
      `MISSING_NEIGHBOUR = -1` as its fourth), and their tags (+1 / -1).

    Raises:
      ValueError: wrong shapes, a non-symmetric bond matrix, tags outside {-1, 0, 1}, or a
        tagged atom with other than three or four neighbours.
    """
    tags = np.asarray(chiral_tags)
    bonds = np.asarray(bond_types)
    if tags.ndim != 1:
        raise ValueError(f"chiral_tags must be [N]; got shape {tags.shape}.")
    n = tags.shape[0]
    if bonds.shape != (n, n):
        raise ValueError(
            f"bond_types must be [N, N] with N = len(chiral_tags) = {n}; got {bonds.shape}."
        )
    if not np.array_equal(bonds != 0, (bonds != 0).T):
        raise ValueError("bond_types must be symmetric (bond_types[i, j] == bond_types[j, i]).")
    bad = ~np.isin(tags, (-1, 0, 1))
    if bad.any():
        raise ValueError(
            f"chiral_tags must be +1 (CCW), -1 (CW) or 0; atom {int(np.argmax(bad))} has "
            f"{tags[bad][0]!r}."
        )
    centres = np.nonzero(tags)[0].astype(np.int32)
    neighbours = np.full((len(centres), 4), MISSING_NEIGHBOUR, np.int32)
    for k, i in enumerate(centres):
        nbrs = np.nonzero(bonds[i])[0]
        if len(nbrs) not in (3, 4):
            raise ValueError(
                f"atom {int(i)} has chiral tag {int(tags[i])} but {len(nbrs)} bonded "
                "neighbours; a tetrahedral centre needs 3 or 4. Are hydrogens explicit in "
                "bond_types, and do the tags belong to this graph?"
            )
        neighbours[k, : len(nbrs)] = nbrs
    return centres, neighbours, tags[centres].astype(np.int32)


def chiral_centres_from_mol(mol: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`chiral_centres` of an RDKit Mol (its tags converted to ascending neighbour order).

    Args:
      mol: `rdkit.Chem.Mol` with its tags set (hydrogens explicit or not).

    Returns:
      `(centres [C], neighbours [C, 4], signs [C])` as `chiral_centres`.
    """
    from rdkit import Chem

    return chiral_centres(chiral_tags_ascending(mol), Chem.GetAdjacencyMatrix(mol))


def pad_chiral_centres(
    items: Sequence[tuple[Any, Any, Any]], max_centres: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack the centres of several molecules into padded batch arrays.

    Args:
      items: `[(centres [C_b], neighbours [C_b, 4 or 3], signs [C_b]), ...]`, one per
        molecule (e.g. from `chiral_centres`).
      max_centres: pad to this many centres C (default: the largest `C_b`, at least 1, so
        no array is empty).

    Returns:
      `(centres [B, C], neighbours [B, C, 4], signs [B, C], mask [B, C])`: int32 indices
      (padding entries 0), int32 signs (0 on padding) and a float32 mask (1 for real
      centres).

    Raises:
      ValueError: a molecule with more than `max_centres` centres, or inconsistent
        lengths inside one item.
    """
    items = list(items)
    counts = []
    for b, (c, nb, s) in enumerate(items):
        c, nb, s = np.asarray(c), np.asarray(nb), np.asarray(s)
        if c.ndim != 1 or s.shape != c.shape or nb.ndim != 2 or nb.shape[0] != c.shape[0]:
            raise ValueError(
                f"items[{b}] must be (centres [C], neighbours [C, 4], signs [C]); got shapes "
                f"{c.shape}, {nb.shape}, {s.shape}."
            )
        if nb.shape[1] not in (3, 4):
            raise ValueError(f"items[{b}] neighbours must be [C, 3] or [C, 4]; got {nb.shape}.")
        counts.append(c.shape[0])
    big_c = max([1, *counts]) if max_centres is None else int(max_centres)
    for b, count in enumerate(counts):
        if count > big_c:
            raise ValueError(
                f"molecule {b} has {count} chiral centres, more than max_centres={big_c}; "
                "raise max_centres."
            )
    centres = np.zeros((len(items), big_c), np.int32)
    neighbours = np.zeros((len(items), big_c, 4), np.int32)
    signs = np.zeros((len(items), big_c), np.int32)
    mask = np.zeros((len(items), big_c), np.float32)
    for b, ((c, nb, s), count) in enumerate(zip(items, counts, strict=True)):
        nb = np.asarray(nb)
        centres[b, :count] = c
        neighbours[b, :count, : nb.shape[1]] = nb
        if nb.shape[1] == 3:
            neighbours[b, :count, 3] = MISSING_NEIGHBOUR
        signs[b, :count] = s
        mask[b, :count] = 1.0
    return centres, neighbours, signs, mask


def _gather(x: jnp.ndarray, index: jnp.ndarray) -> jnp.ndarray:
    """`x[..., index[..., k], :]` with broadcasting leading dims: `[..., C, 3]`."""
    batch = jnp.broadcast_shapes(x.shape[:-2], index.shape[:-1])
    x = jnp.broadcast_to(x, batch + x.shape[-2:])
    index = jnp.broadcast_to(index, batch + index.shape[-1:])
    return jnp.take_along_axis(x, index[..., None], axis=-2)


def signed_volumes(x: Any, centres: Any, neighbours: Any) -> jnp.ndarray:
    """Signed volume `(x_a - x_o) . ((x_b - x_o) x (x_c - x_o))` at each centre.

    `o` is the centre and `a, b, c` its first three neighbours (ascending index); the sign
    is RDKit's handedness (> 0 CCW, < 0 CW). Leading dimensions broadcast, so one set of
    centres can serve a stack of conformers of the same molecule.

    Args:
      x: `[..., N, 3]` coordinates.
      centres: `[..., C]` int atom indices of the centres.
      neighbours: `[..., C, 4]` (or `[..., C, 3]`) int neighbour indices; only the first
        three are read.

    Returns:
      `[..., C]` signed volumes (units of x cubed). Padded entries give arbitrary values;
      mask them.
    """
    x = jnp.asarray(x)
    centres = jnp.asarray(centres)
    neighbours = jnp.asarray(neighbours)
    if x.ndim < 2 or x.shape[-1] != 3:
        raise ValueError(f"x must be [..., N, 3]; got shape {x.shape}.")
    if neighbours.shape[:-1] != centres.shape or neighbours.shape[-1] not in (3, 4):
        raise ValueError(
            "neighbours must be [..., C, 4] (or 3) with [..., C] the shape of centres; got "
            f"centres {centres.shape}, neighbours {neighbours.shape}."
        )
    origin = _gather(x, centres)  # [..., C, 3]
    vecs = [_gather(x, neighbours[..., k]) - origin for k in range(3)]
    return jnp.sum(vecs[0] * jnp.cross(vecs[1], vecs[2]), axis=-1)


def parity_votes(
    x: Any, centres: Any, neighbours: Any, signs: Any, mask: Any | None = None
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """How many tagged centres of each conformer have the right / the wrong handedness.

    A centre agrees when `sign(V) == sign` and disagrees when `sign(V) == -sign`; a flat
    centre (`V == 0`), an untagged one (`sign == 0`) or a masked one counts as neither.

    Args:
      x: `[..., N, 3]` coordinates.
      centres, neighbours, signs: `[..., C]`, `[..., C, 4]`, `[..., C]` (see
        `pad_chiral_centres`); leading dimensions broadcast against x's.
      mask: `[..., C]`, 1 for real centres; None: all real.

    Returns:
      `(agree, disagree)`, each `[...]` in x's dtype.
    """
    vol = signed_volumes(x, centres, neighbours)
    s = jnp.sign(vol) * jnp.asarray(signs, vol.dtype)
    if mask is not None:
        s = s * jnp.asarray(mask, vol.dtype)
    return jnp.sum(s > 0, axis=-1).astype(vol.dtype), jnp.sum(s < 0, axis=-1).astype(vol.dtype)


def needs_reflection(
    x: Any, centres: Any, neighbours: Any, signs: Any, mask: Any | None = None
) -> jnp.ndarray:
    """True for conformers whose tagged centres are mostly (strictly) of the wrong hand.

    Args:
      As `parity_votes`.

    Returns:
      `[...]` bool: `disagree > agree`. False when no centre is tagged, and on ties.
    """
    agree, disagree = parity_votes(x, centres, neighbours, signs, mask)
    return disagree > agree


def parity_correct(
    x: Any, centres: Any, neighbours: Any, signs: Any, mask: Any | None = None
) -> jnp.ndarray:
    """Reflect the conformers whose stereocentres mostly have the wrong handedness.

    Paper 000, section 4.2 (O(3) option with a parity correction). The reflection is the
    point inversion `x -> -x` (determinant -1: it maps a conformer to its mirror image and
    flips every signed volume; any other reflection differs from it by a rotation, which
    conformer metrics ignore). It keeps a zero centre of mass and zero padding. Conformers
    without tagged centres, with a majority of right centres, or with a tie are returned
    unchanged.

    Args:
      x: `[B, N, 3]` (any leading dims) sampled coordinates.
      centres, neighbours, signs, mask: padded per conformer as `pad_chiral_centres`
        returns them (`[B, C]`, `[B, C, 4]`, `[B, C]`, `[B, C]`), or one molecule's
        unbatched arrays broadcast over many of its conformers.

    Returns:
      `[B, N, 3]` corrected coordinates, same dtype.
    """
    x = jnp.asarray(x)
    flip = needs_reflection(x, centres, neighbours, signs, mask)
    return jnp.where(flip[..., None, None], -x, x)


__all__ = [
    "CCW",
    "CW",
    "MISSING_NEIGHBOUR",
    "chiral_centres",
    "chiral_centres_from_mol",
    "chiral_tags_ascending",
    "needs_reflection",
    "pad_chiral_centres",
    "parity_correct",
    "parity_votes",
    "signed_volumes",
]
