"""The conformer tables as batches: the arrays a step reads, fixed evaluation batches."""

from __future__ import annotations

import jax
import numpy as np

from experiments.common.state import to_device
from symdiff_jax.conformers.datasets import SOURCE_ELEMENTS, conformer_batch
from symdiff_jax.conformers.graphs import atom_feature_names

DEVICE_KEYS = (
    "positions",
    "atom_features",
    "bond_types",
    "mask",
    "automorphisms",
    "automorphism_mask",
    "bank",
    "bank_log_weights",
)


def num_atom_features(table: dict[str, np.ndarray]) -> int:
    """Width of the atom features of a loaded table."""
    return int(table["atom_features"].shape[-1])


def elements_of(config) -> tuple:
    """The element vocabulary of the config's data source (`data.source`)."""
    return SOURCE_ELEMENTS[config.data.source]


def num_features_of(config) -> int:
    """Width of the atom features of the config's data source (without loading it)."""
    return len(atom_feature_names(elements_of(config)))


def fixed_batches(table, config, count: int) -> list[dict[str, jax.Array]]:
    """Up to `count` conformer rows of a split in order, as full batches."""
    rows = np.arange(min(count, len(table["positions"])))
    size = min(config.batch_size, len(rows))
    return [
        to_device(
            conformer_batch(
                table,
                rows[i : i + size],
                automorphism_width=config.data.max_automorphisms,
                bank_size=config.data.bank_size,
            ),
            DEVICE_KEYS,
        )
        for i in range(0, len(rows) - size + 1, size)
    ]
