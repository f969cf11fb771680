"""Datasets for molecule generation: QM9, GEOM-Drugs and your own molecules (SDF, xyz, ASE
database) loading and splitting, features, batching, and molecule files (SDF, xyz, npz,
ASE) and pictures."""

from symdiff_jax.data.ase_io import read_ase_db, to_ase_atoms, write_ase_db
from symdiff_jax.data.batching import (
    batch_iterator,
    num_atoms_log_prob,
    num_batches,
    sample_num_atoms,
    sampling_batches,
    size_histogram,
    size_probabilities,
)
from symdiff_jax.data.drawing import draw_molecule_3d, molecule_grid_png
from symdiff_jax.data.features import (
    ATOM_SYMBOLS,
    ATOM_TYPES,
    CHARGE_SCALE,
    NUM_FEATURES,
    ONE_HOT_SCALE,
    POSITION_SCALE,
    atom_mask,
    atomic_numbers_from_features,
    edge_mask,
    featurise,
    mask_from_charges,
    one_hot,
)
from symdiff_jax.data.geom import convert_to_cache, load_cached
from symdiff_jax.data.geom_drugs import (
    GEOM_ATOM_TYPES,
    GEOM_MAX_ATOMS,
    geom_features,
    load_geom_drugs,
)
from symdiff_jax.data.geom_features import graph_features
from symdiff_jax.data.geom_pickles import load_geom_split, load_test_mols
from symdiff_jax.data.qm9 import (
    MAX_ATOMS,
    SPLIT_SIZES,
    SPLITS,
    characterised_gdb9_indices,
    default_cache_dir,
    edm_split_indices,
    load_qm9,
    load_qm9_graph_smiles,
    parse_gdb9_xyz,
    split_of_gdb_index,
)
from symdiff_jax.data.sources import MoleculeSource, load_molecule_source
from symdiff_jax.data.writers import (
    load_samples_npz,
    molecules_to_rdkit,
    read_xyz,
    write_samples_npz,
    write_sdf,
    write_xyz,
)

__all__ = [
    "MoleculeSource",
    "load_molecule_source",
    "read_ase_db",
    "to_ase_atoms",
    "write_ase_db",
    "convert_to_cache",
    "graph_features",
    "load_cached",
    "load_geom_split",
    "load_test_mols",
    "GEOM_ATOM_TYPES",
    "GEOM_MAX_ATOMS",
    "draw_molecule_3d",
    "geom_features",
    "load_geom_drugs",
    "load_samples_npz",
    "molecule_grid_png",
    "molecules_to_rdkit",
    "read_xyz",
    "write_samples_npz",
    "write_sdf",
    "write_xyz",
    "batch_iterator",
    "num_atoms_log_prob",
    "num_batches",
    "sample_num_atoms",
    "sampling_batches",
    "size_histogram",
    "size_probabilities",
    "ATOM_SYMBOLS",
    "ATOM_TYPES",
    "CHARGE_SCALE",
    "NUM_FEATURES",
    "ONE_HOT_SCALE",
    "POSITION_SCALE",
    "atom_mask",
    "atomic_numbers_from_features",
    "edge_mask",
    "featurise",
    "mask_from_charges",
    "one_hot",
    "MAX_ATOMS",
    "SPLIT_SIZES",
    "SPLITS",
    "characterised_gdb9_indices",
    "default_cache_dir",
    "edm_split_indices",
    "load_qm9",
    "load_qm9_graph_smiles",
    "parse_gdb9_xyz",
    "split_of_gdb_index",
]
