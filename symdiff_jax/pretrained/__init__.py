"""Official SymDiff and EDM checkpoints in symdiff_jax: converters and `load_official`."""
