"""The SymDiff denoiser against its definition, `R . eps_theta(R^T . z_t, t)` (paper 002,
eq. 14), evaluated piece by piece."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.groups import remove_com
from symdiff_jax.models.denoisers import SymDiffDenoiser
from symdiff_jax.models.dit import DiT
from symdiff_jax.models.gamma_net import GammaNet
from symdiff_jax.testing import assert_stochastically_equivariant, randomise_parameters


def _inputs(batch=3, n=7, features=6, seed=0):
    rng = np.random.default_rng(seed)
    sizes = np.array([n, n - 2, 3])[:batch]
    mask = (np.arange(n)[None] < sizes[:, None]).astype(np.float32)
    x = rng.normal(size=(batch, n, 3)).astype(np.float32) * mask[..., None]
    h = rng.normal(size=(batch, n, features)).astype(np.float32) * mask[..., None]
    t = rng.uniform(size=(batch,)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(h), jnp.asarray(t), jnp.asarray(mask)


@pytest.mark.parametrize("kind", ["symdiff", "symdiff_h"])
def test_symdiff_denoiser_is_the_sandwich_with_one_shared_distance_embedding(kind):
    """The distance features computed once (they are invariant) give the sandwich of
    separately evaluated `gamma` and `eps_theta`, up to float32 rounding."""
    rngs = nnx.Rngs(0)
    dit = DiT(6, hidden=32, depth=1, heads=2, node_embed=16, num_gaussians=8, rngs=rngs)
    gamma_net = None
    if kind == "symdiff":
        gamma_net = GammaNet(
            hidden=16, depth=1, heads=2, decoder_hidden=8, dist_embed=16, num_gaussians=8,
            distance_embedding=dit.distance_embedding, rngs=rngs,
        )  # fmt: skip
    denoiser = SymDiffDenoiser(dit, gamma_net)
    x, h, t, mask = _inputs()
    key = jax.random.key(3)
    # Away from the zero-initialised output layers, so that the outputs are not all 0.
    graphdef, params = nnx.split(randomise_parameters(denoiser, jax.random.key(1), 0.2))

    @jax.jit
    def both(params):
        model = nnx.merge(graphdef, params)
        eps_x, eps_h = model(key, x, h, t, mask)
        r = model.rotation(key, x, h, t, mask)  # the R the call above used
        ref_x, ref_h = model.eps_net(x @ r, h, t, mask)  # R^T . z_t, rows as points
        return eps_x, eps_h, ref_x @ jnp.swapaxes(r, -1, -2), ref_h, r

    eps_x, eps_h, ref_x, ref_h, r = both(params)
    np.testing.assert_allclose(
        np.einsum("bij,bkj->bik", r, r), np.broadcast_to(np.eye(3), r.shape), atol=1e-5
    )
    np.testing.assert_allclose(eps_x, ref_x, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(eps_h, ref_h, atol=2e-5, rtol=1e-4)
    # The comparison can fail: another rotation gives another output.
    other_x, _ = jax.jit(lambda p: nnx.merge(graphdef, p).eps_net(x, h, t, mask))(params)
    assert np.max(np.abs(np.asarray(other_x) - np.asarray(eps_x))) > 1e-3


class PerAtomNet(nnx.Module):
    """A user's eps-network: one MLP per atom on `[x, h, t]`, S_N- but not O(3)-equivariant."""

    def __init__(self, num_features: int, hidden: int, rngs: nnx.Rngs):
        self.inner = nnx.Linear(3 + num_features + 1, hidden, rngs=rngs)
        self.outer = nnx.Linear(hidden, 3 + num_features, rngs=rngs)

    def __call__(self, x, h, t, mask):
        t_col = jnp.broadcast_to(t[:, None, None], x.shape[:-1] + (1,))
        out = self.outer(jnp.tanh(self.inner(jnp.concatenate([x, h, t_col], -1))))
        m = mask[..., None]
        return remove_com(out[..., :3] * m, mask), out[..., 3:] * m


def user_kernel(model):
    """`(key, (x, h), mask) -> (eps_x, eps_h)` on one molecule, for the equivariance test."""

    def kernel(key, state, mask):
        eps_x, eps_h = model(key, state[0][None], state[1][None], jnp.full((1,), 0.4), mask[None])
        return eps_x[0], eps_h[0]

    return kernel


@pytest.mark.parametrize("symmetrised", [True, False])
def test_a_user_eps_network_is_symmetrised_into_an_equivariant_kernel(key, symmetrised):
    """A module with the documented signature and no distance embedding goes through
    `SymDiffDenoiser` (Haar gamma) and comes out S_N x O(3)-equivariant in distribution
    (false-alarm rate 1e-3); the same network unsymmetrised is rejected by the same test."""
    net = PerAtomNet(4, 16, nnx.Rngs(0))
    x, h, _, mask = _inputs(batch=1, features=4)
    if symmetrised:
        model = SymDiffDenoiser(net)
        kernel = user_kernel(model)
        eps_x, eps_h = kernel(key, (x[0], h[0]), mask[0])
        assert eps_x.shape == (7, 3) and eps_h.shape == (7, 4)
        assert_stochastically_equivariant(
            kernel, key, (x[0], h[0]), group="O3", mask=mask[0], num_samples=200
        )
    else:
        kernel = user_kernel(lambda k, *a: net(*a))
        with pytest.raises(AssertionError):
            assert_stochastically_equivariant(
                kernel, key, (x[0], h[0]), group="O3", mask=mask[0], num_samples=200
            )
