"""Evaluation metrics: molecule stability and RDKit validity (EDM), conformer coverage and
AMR, toy-experiment metrics."""

from symdiff_jax.metrics.conformers import (
    conformer_metrics,
    coverage_curve,
    evaluate_molecules,
    metrics_from_rmsd,
    rmsd_matrix,
    summarise,
)
from symdiff_jax.metrics.rdkit_metrics import (
    canonical_smiles,
    canonical_smiles_set,
    rdkit_metrics,
    xyz_smiles,
)
from symdiff_jax.metrics.stability import bond_orders, stability, stable_atoms

__all__ = [
    "bond_orders",
    "canonical_smiles",
    "canonical_smiles_set",
    "conformer_metrics",
    "coverage_curve",
    "evaluate_molecules",
    "metrics_from_rmsd",
    "rmsd_matrix",
    "summarise",
    "rdkit_metrics",
    "stability",
    "stable_atoms",
    "xyz_smiles",
]
