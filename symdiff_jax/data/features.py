"""Atom features and masks for molecules with hydrogens (QM9 conventions of EDM / SymDiff).

Each atom carries `h = [one_hot(H, C, N, O, F), atomic_number]` (6 numbers). The diffusion
model sees them scaled, as in EDM (Hoogeboom et al., 2022) and SymDiff:

    raw     h = [o_H, o_C, o_N, o_O, o_F, Z]            o = one-hot in {0, 1}, Z in {1, ..., 9}
    scaled  h = [o / 4, Z / 10]                          positions are scaled by 1

Padded atoms have all-zero features. Every function here accepts numpy or JAX arrays and
returns the same kind (jit/vmap compatible with JAX inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: Atomic numbers of the QM9 atom types, in one-hot order.
ATOM_TYPES: tuple[int, ...] = (1, 6, 7, 8, 9)
#: Element symbols in one-hot order.
ATOM_SYMBOLS: tuple[str, ...] = ("H", "C", "N", "O", "F")
#: Feature scaling of EDM / SymDiff: positions / 1, one-hot / 4, atomic number / 10.
POSITION_SCALE: float = 1.0
ONE_HOT_SCALE: float = 4.0
CHARGE_SCALE: float = 10.0
#: Number of feature channels: 5 one-hot + 1 atomic number.
NUM_FEATURES: int = len(ATOM_TYPES) + 1


def array_module(*arrays):
    """`jax.numpy` if any of `arrays` is a JAX array, else `numpy` (keeps host data on host)."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def atom_mask(num_atoms: Any, max_atoms: int) -> Any:
    """`[M, max_atoms]` float32 mask with ones on the first `num_atoms[m]` slots."""
    xp = array_module(num_atoms)
    n = xp.asarray(num_atoms)
    return (xp.arange(max_atoms) < n[..., None]).astype(xp.float32)


def mask_from_charges(charges: Any) -> Any:
    """`[..., N]` float32 mask: 1 where the atomic number is positive (0 marks padding)."""
    xp = array_module(charges)
    return (xp.asarray(charges) > 0).astype(xp.float32)


def edge_mask(mask: Any) -> Any:
    """`[..., N, N]` mask of ordered pairs of distinct real atoms (no self-pairs)."""
    xp = array_module(mask)
    m = xp.asarray(mask)
    n = m.shape[-1]
    return m[..., :, None] * m[..., None, :] * (1 - xp.eye(n, dtype=m.dtype))


def one_hot(charges: Any, mask: Any = None, atom_types: Sequence[int] = ATOM_TYPES) -> Any:
    """`[..., N, K]` one-hot over `atom_types` (default H, C, N, O, F) of atomic numbers.

    Atoms of other elements and padded atoms get a zero row; `mask` (optional) zeroes
    further rows. Validate elements at load time (`load_qm9` does).
    """
    xp = array_module(charges, mask)
    z = xp.asarray(charges)
    oh = (z[..., None] == xp.asarray(tuple(atom_types))).astype(xp.float32)
    if mask is not None:
        oh = oh * xp.asarray(mask, dtype=xp.float32)[..., None]
    return oh


def featurise(
    charges: Any,
    mask: Any = None,
    *,
    scaled: bool = True,
    atom_types: Sequence[int] = ATOM_TYPES,
) -> Any:
    """Atom features `h [..., N, 6]` = `[one_hot(H, C, N, O, F), Z]`, scaled by default.

    Args:
      charges: `[..., N]` atomic numbers (0 = padding).
      mask: `[..., N]`, nonzero for real atoms; `None` uses `charges > 0`.
      scaled: if True (default) returns `[one_hot / 4, Z / 10]` (the model input of EDM
        and SymDiff); if False the raw `[one_hot, Z]`.
      atom_types: atomic numbers of the one-hot classes, in order (default QM9's
        H, C, N, O, F; `K` classes give `K + 1` channels).

    Returns:
      float32 `[..., N, 6]` (`[..., N, K + 1]`), zero on padded atoms; numpy for numpy
      inputs, JAX for JAX.
    """
    xp = array_module(charges, mask)
    z = xp.asarray(charges)
    m = mask_from_charges(z) if mask is None else xp.asarray(mask, dtype=xp.float32)
    oh = one_hot(z, m, atom_types)
    zf = z.astype(xp.float32)[..., None] * m[..., None]
    if scaled:
        oh, zf = oh / ONE_HOT_SCALE, zf / CHARGE_SCALE
    return xp.concatenate([oh, zf], axis=-1)


def atomic_numbers_from_features(
    h: Any, mask: Any = None, atom_types: Sequence[int] = ATOM_TYPES
) -> Any:
    """Decodes `[..., N, >=K]` features (raw or scaled) to atomic numbers `[..., N]` int32.

    Takes the argmax of the `K = len(atom_types)` one-hot channels (so it works for
    scaled, raw and noisy model outputs) and maps it to `atom_types` (default
    (1, 6, 7, 8, 9)); padded atoms (mask 0) get 0.
    """
    xp = array_module(h, mask)
    h = xp.asarray(h)
    types = xp.asarray(tuple(atom_types), dtype=xp.int32)
    z = types[xp.argmax(h[..., : len(types)], axis=-1)]
    if mask is not None:
        z = xp.where(xp.asarray(mask) > 0, z, 0)
    return z.astype(xp.int32)
