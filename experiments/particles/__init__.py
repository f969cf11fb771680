"""Many-particle systems (DW4, LJ13): flow- and score-based SymDiff against an EGNN flow."""
