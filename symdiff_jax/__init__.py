"""symdiff_jax: equivariant diffusion through symmetrisation, in JAX.

Subpackages:
  groups      group actions, Haar sampling, differentiable QR to rotations.
  diffusion   noise schedules, forward process, posteriors and samplers.
  symmetrise  stochastic symmetrisation of Markov kernels (SymDiff).
  targets     the symmetrised (group-averaged posterior-mean) target.
  testing     equivariance assertions, deterministic and in distribution.
  models      Flax NNX networks.
  metrics     evaluation metrics.
"""

__version__ = "0.1.0"
