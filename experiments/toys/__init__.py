"""The toy experiments of paper 000 (section 4.1): 1D reflections and 2D point sets."""
