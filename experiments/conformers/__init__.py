"""Conformer generation with the symmetrised target (paper 000, section 4.2)."""
