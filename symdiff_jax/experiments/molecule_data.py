"""The molecule datasets the generation runner knows: how to load, featurise and decode.

`config.data.dataset` picks one:
  qm9         QM9 with hydrogens (offline from qm9pack; EDM's split), <= 29 atoms,
              features one-hot(H, C, N, O, F) / 4 and atomic number / 10.
  geom_drugs  EDM's processed GEOM-Drugs with hydrogens (`config.data.source` is the
              directory of its files), <= 181 atoms, features one-hot over 16 elements
              / 4 without the charge column (EDM and SymDiff train it with
              `include_charges=False`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from symdiff_jax.data import ATOM_TYPES, MAX_ATOMS, featurise, load_qm9
from symdiff_jax.data.geom_drugs import (
    GEOM_ATOM_TYPES,
    GEOM_MAX_ATOMS,
    geom_features,
    load_geom_drugs,
)
from symdiff_jax.diffusion.molecules import FeatureSpec


class MoleculeDataset(NamedTuple):
    """What the runner needs to know about a dataset.

    Attributes:
      name: the `config.data.dataset` value.
      atom_types: atomic numbers of the one-hot classes, in order.
      max_atoms: the padded width.
      include_charges: whether the features end with an atomic-number column.
      featurise: `(charges [..., N], mask [..., N]) -> h [..., N, F]`, scaled.
      load: `(split, data_config) -> dict` of numpy arrays (`positions`, `charges`,
        `num_atoms`, ...), as `load_qm9` returns.
    """

    name: str
    atom_types: tuple[int, ...]
    max_atoms: int
    include_charges: bool
    featurise: Callable[[Any, Any], Any]
    load: Callable[[str, Any], dict[str, np.ndarray]]

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(num_classes=len(self.atom_types), include_charges=self.include_charges)


def _load_qm9(split: str, data) -> dict[str, np.ndarray]:
    return load_qm9(split, source=data.source or None, cache_dir=data.cache_dir or None)


def _load_geom(split: str, data) -> dict[str, np.ndarray]:
    out = load_geom_drugs(split, data.source or None, max_atoms=data.max_atoms or None)
    out.pop("dataset_smiles", None)  # per molecule, not aligned with the conformers
    return out


DATASETS: dict[str, MoleculeDataset] = {
    "qm9": MoleculeDataset("qm9", ATOM_TYPES, MAX_ATOMS, True, featurise, _load_qm9),
    "geom_drugs": MoleculeDataset(
        "geom_drugs", GEOM_ATOM_TYPES, GEOM_MAX_ATOMS, False, geom_features, _load_geom
    ),
}


def get_dataset(name: str) -> MoleculeDataset:
    """The dataset registered as `name`."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data.dataset {name!r}; expected one of {sorted(DATASETS)}.")
    return DATASETS[name]
