"""Graph-conditioned conformer generation (paper 000, section 4.2)."""
