"""Readers for the published DW4 / LJ13 splits (equivariant flow matching, DEM).

The published files are flat float32 arrays `[M, N * d]` named
`{train,val,test}_split_DW4.npy` and `{train,val,test}_split_LJ13-1000.npy` (as distributed
with Akhound-Sadegh et al. 2024, "Iterated denoising energy matching", folder `data/`, which
re-distributes the data of Klein et al. 2023). The DW4 files are not CoM-centred; the loader
centres every split. Nothing is downloaded: the user points at a directory holding them.
"""

from __future__ import annotations

import os

import numpy as np

from symdiff_jax.groups import remove_com
from symdiff_jax.systems.energies import get_system

REFERENCE_FILES = {
    "dw4": "{split}_split_DW4.npy",
    "lj13": "{split}_split_LJ13-1000.npy",
}
SPLITS = ("train", "val", "test")


def load_reference_split(directory: str, system: str, split: str) -> np.ndarray:
    """A published split as CoM-free `[M, N, d]` float32 samples.

    Args:
      directory: folder holding the published `.npy` files.
      system: "dw4" or "lj13".
      split: "train", "val" or "test".

    Raises:
      FileNotFoundError: naming the file that was expected and where.
      ValueError: for an unknown split or a file of the wrong width.
    """
    spec = get_system(system)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    name = REFERENCE_FILES[system].format(split=split)
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No published {system} {split} split at {path}: put {name} (folder data/ of the "
            "github repository jarridrb/DEM) in that directory."
        )
    flat = np.load(path, allow_pickle=False)
    width = spec.num_particles * spec.dim
    if flat.ndim != 2 or flat.shape[1] != width:
        raise ValueError(
            f"{path} has shape {flat.shape}; a {system} split is [M, {width}] "
            f"({spec.num_particles} particles x {spec.dim} coordinates)."
        )
    x = flat.reshape(-1, spec.num_particles, spec.dim).astype(np.float32)
    return np.asarray(remove_com(x), np.float32)
