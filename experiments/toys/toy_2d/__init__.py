"""The 2D rotation + permutation toy (paper 000, section 4.1, Fig. 3)."""
