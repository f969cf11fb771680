"""Molecule generation on QM9 and GEOM-Drugs (paper 002): SymDiff and its baselines."""
