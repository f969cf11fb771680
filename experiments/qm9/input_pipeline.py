"""The molecule datasets of the generation experiments: loading, featurising, batching.

`config.data.dataset` picks one:
  qm9         QM9 with hydrogens (offline from qm9pack; EDM's split), <= 29 atoms,
              features one-hot(H, C, N, O, F) / 4 and atomic number / 10.
  geom_drugs  EDM's processed GEOM-Drugs with hydrogens (`config.data.source` is the
              directory of its files), <= 181 atoms, features one-hot over 16 elements
              / 4 without the charge column (EDM and SymDiff train it with
              `include_charges=False`).
  molecules   your own molecules: `config.data.source` is a directory of SDF/xyz files,
              a multi-molecule SDF, an xyz file or an ASE database
              (`symdiff_jax.data.sources.load_molecule_source`); the element set and the
              padded width come from the data unless `data.elements` / `data.max_atoms`
              set them; features as QM9's over the source's elements.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from experiments.common.state import to_device
from symdiff_jax.data import (
    ATOM_TYPES,
    MAX_ATOMS,
    batch_iterator,
    featurise,
    load_qm9,
    num_batches,
)
from symdiff_jax.data.geom_drugs import (
    GEOM_ATOM_TYPES,
    GEOM_MAX_ATOMS,
    geom_features,
    load_geom_drugs,
)
from symdiff_jax.data.sources import MoleculeSource, element_symbol, load_molecule_source
from symdiff_jax.diffusion.molecules import FeatureSpec


class MoleculeDataset(NamedTuple):
    """What the experiment needs to know about a dataset.

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


DEVICE_KEYS = ("positions", "h", "charges", "mask")


def molecule_source(data) -> MoleculeSource:
    """The `load_molecule_source` of a `data.dataset = "molecules"` config section."""
    return load_molecule_source(
        data.source,
        strict=bool(data.strict),
        elements=data.elements or None,
        max_atoms=data.max_atoms or None,
        seed=int(data.seed),
        split_fractions=tuple(data.split_fractions),
    )


def resolve_molecule_source(config) -> None:
    """Reads a molecules source and writes its element set and width into `config.data`.

    No-op for the other datasets. Raises the source's errors (a missing or empty source, an
    unparsable record with `data.strict`) before anything is built.
    """
    if config.data.get("dataset") != "molecules":
        return
    src = molecule_source(config.data)
    config.data.elements = ",".join(element_symbol(z) for z in src.atom_types)
    config.data.max_atoms = int(src.max_atoms)


def novelty_smiles(config, train: dict[str, np.ndarray]) -> list[str] | None:
    """The training SMILES novelty is scored against in a molecules run (else None)."""
    if config.data.get("dataset") != "molecules" or not config.evaluate.get("novelty"):
        return None
    return [s for s in train["smiles"] if s]


def dataset_of(config) -> MoleculeDataset:
    """The dataset named by `config.data.dataset` (default QM9)."""
    name = config.data.get("dataset", "qm9")
    if name == "molecules":
        src = molecule_source(config.data)
        return MoleculeDataset(
            name, src.atom_types, src.max_atoms, True, src.featurise, lambda split, _: src[split]
        )
    return get_dataset(name)


def _subset(data: dict[str, np.ndarray], count: int, seed: int) -> dict[str, np.ndarray]:
    if not count or count >= len(data["num_atoms"]):
        return data
    idx = np.sort(np.random.default_rng(seed).permutation(len(data["num_atoms"]))[:count])
    return {k: v[idx] for k, v in data.items()}


def load_split(config, split: str, max_molecules: int = 0) -> dict[str, np.ndarray]:
    """One split of the config's dataset, optionally a fixed random subset."""
    return _subset(dataset_of(config).load(split, config.data), max_molecules, config.seed)


def train_batches(train: dict, config, start_step: int) -> Iterator[dict[str, np.ndarray]]:
    """The host batch of step `start_step + 1`, then the next...: a pure function of the step.

    Epoch `e` is a fixed shuffle of `(seed, e)`, so a resumed run sees exactly the
    batches an uninterrupted one would.
    """
    buckets = tuple(config.data.bucket_sizes) or None
    per_epoch = num_batches(train["num_atoms"], config.batch_size, bucket_sizes=buckets)
    if per_epoch == 0:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training set "
            f"({len(train['num_atoms'])} molecules) or every size bucket."
        )
    epoch, offset = divmod(start_step, per_epoch)
    it = batch_iterator(
        train,
        config.batch_size,
        seed=config.seed,
        bucket_sizes=buckets,
        num_epochs=None,
        start_epoch=epoch,
        features=dataset_of(config).featurise,
    )
    return itertools.islice(it, offset, None)


def fixed_batches(data: dict, batch_size: int, features=None) -> list[dict[str, jax.Array]]:
    """Every full batch of `batch_size` molecules, in order (or the one short batch).

    `features`: the dataset's featuriser (default: QM9's).
    """
    kw = {} if features is None else {"features": features}

    def batches():
        return batch_iterator(data, batch_size, shuffle=False, drop_remainder=False, **kw)

    full = [to_device(b, DEVICE_KEYS) for b in batches() if len(b["num_atoms"]) == batch_size]
    return full or [to_device(next(batches()), DEVICE_KEYS)]
