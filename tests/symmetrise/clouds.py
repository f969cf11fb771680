"""The point cloud and the non-equivariant kernel the symmetrisation tests share."""

import jax
import jax.numpy as jnp

# False-alarm rate of each `assert_stochastically_equivariant` call.
ALPHA = 1e-3
MASK = jnp.asarray([1, 1, 1, 0, 1, 0], jnp.float32)
# A fixed, non-orthogonal linear map and an anisotropic noise scale.
A = jnp.asarray([[1.2, 0.4, 0.0], [-0.3, 0.8, 0.5], [0.1, 0.0, 1.5]])
L = jnp.diag(jnp.asarray([1.0, 0.3, 0.3]))


def cloud(seed: int = 0) -> jax.Array:
    """`[6, 3]` standard normal points, zero on the padded rows of `MASK`."""
    return jax.random.normal(jax.random.key(seed), (6, 3)) * MASK[:, None]


def linear_kernel(key, x, mask=None):
    """k(y | x): y = x A + eps L, eps iid per atom. S_N-equivariant, not O(3)-equivariant."""
    eps = jax.random.normal(key, x.shape) @ L
    if mask is not None:
        eps = eps * mask[..., None]
    return x @ A + eps
