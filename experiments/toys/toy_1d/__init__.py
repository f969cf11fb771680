"""The 1D reflection toy (paper 000, section 4.1, Table 1, Fig. 2)."""
