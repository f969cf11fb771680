"""Molecule diffusion: the symmetrised reverse kernel's law and the sampler.

Networks are tiny (width 16-32, 1-2 blocks) with randomised parameters, so that a
broken symmetry is visible (fresh SymDiff networks output exactly zero).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.diffusion import ancestral_step, polynomial_schedule
from symdiff_jax.diffusion.molecules import sample_molecules
from symdiff_jax.models.denoisers import DiTDenoiser, EGNNDenoiser, SymDiffDenoiser
from symdiff_jax.models.dit import DiT
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.models.gamma_net import GammaNet
from symdiff_jax.testing import assert_stochastically_equivariant, randomise_parameters
from symdiff_jax.testing.fake_data import random_molecule

SCHEDULE = polynomial_schedule(1000)
MASK = np.array([1, 1, 0, 1, 1, 1, 0], np.float32)  # interleaved padding
MASKS = [MASK, np.array([1, 1, 1, 1, 1, 0, 0], np.float32), np.ones(7, np.float32)]


def make_denoiser(kind, seed=0, scale=0.3):
    rngs = nnx.Rngs(seed)
    dit = DiT(6, hidden=32, depth=1, heads=2, node_embed=16, num_gaussians=8, rngs=rngs)
    if kind == "dit":
        model = DiTDenoiser(dit)
    elif kind == "symdiff_h":
        model = SymDiffDenoiser(dit, None)
    elif kind == "symdiff":
        gamma = GammaNet(
            hidden=16, depth=1, heads=2, decoder_hidden=8, distance_embedding=dit.distance_embedding,
            rngs=rngs,
        )  # fmt: skip
        model = SymDiffDenoiser(dit, gamma)
    else:
        model = EGNNDenoiser(EGNN(6, hidden=16, num_layers=2, attention=True, tanh=True, rngs=rngs))
    return randomise_parameters(model, jax.random.key(seed + 11), scale)


def molecule(seed=0, mask=MASK):
    return random_molecule(seed, mask)


def reverse_kernel(model, s, t):
    """`p(z_s | z_t)` on one molecule: the denoiser's eps, then one ancestral step."""
    graphdef, params = nnx.split(model)

    def kernel(key, state, mask):
        x, h = state
        k_model, k_step = jax.random.split(key)
        eps_x, eps_h = nnx.merge(graphdef, params)(
            k_model, x[None], h[None], jnp.full((1,), t), mask[None]
        )
        z = jnp.concatenate([x, h], -1)[None]
        eps = jnp.concatenate([eps_x, eps_h], -1)
        z_s = ancestral_step(k_step, z, eps, s, t, SCHEDULE, mask[None], position_dims=3)[0]
        return z_s[:, :3], z_s[:, 3:]

    return kernel


@pytest.mark.parametrize("kind", ["symdiff", "symdiff_h", "edm"])
def test_reverse_kernel_is_equivariant_in_distribution(key, kind):
    """S_N x O(3) (rotations, reflections, permutations). False-alarm rate 1e-3."""
    x, h, _ = molecule(1)
    kernel = reverse_kernel(make_denoiser(kind), s=0.3, t=0.7)
    results = assert_stochastically_equivariant(
        kernel, key, (x, h), group="O3", mask=jnp.asarray(MASK), num_samples=300
    )
    assert len(results) == 3


def test_reverse_kernel_of_the_plain_dit_is_not_equivariant(key):
    """The unsymmetrised DiT breaks O(3); the same test must reject it."""
    x, h, _ = molecule(1)
    kernel = reverse_kernel(make_denoiser("dit"), s=0.3, t=0.7)
    with pytest.raises(AssertionError):
        assert_stochastically_equivariant(
            kernel, key, (x, h), group="O3", mask=jnp.asarray(MASK), num_samples=300
        )


def test_sampling_shapes_masks_and_reproducibility(key):
    model = make_denoiser("symdiff")
    mask = jnp.asarray(np.stack(MASKS))
    sample = jax.jit(lambda k: sample_molecules(model, k, mask, SCHEDULE, num_steps=8))
    a, b, c = sample(key), sample(key), sample(jax.random.fold_in(key, 1))
    assert a["positions"].shape == (3, 7, 3) and a["one_hot"].shape == (3, 7, 5)
    pad = np.asarray(mask) == 0
    assert np.all(np.asarray(a["positions"])[pad] == 0) and np.all(
        np.asarray(a["charges"])[pad] == 0
    )
    assert np.all(np.asarray(a["one_hot"]).sum(-1) == np.asarray(mask))
    positions = np.asarray(a["positions"])
    com = (positions * np.asarray(mask)[..., None]).sum(1)
    assert np.abs(com).max() <= 1e-5 * np.abs(positions).max() * mask.shape[1]
    assert np.array_equal(np.asarray(a["positions"]), np.asarray(b["positions"]))
    assert not np.allclose(np.asarray(a["positions"]), np.asarray(c["positions"]))


def test_unknown_sampler_is_rejected(key):
    model = make_denoiser("dit")
    mask = jnp.asarray(np.stack(MASKS[:1]))
    with pytest.raises(ValueError, match="sampler"):
        sample_molecules(model, key, mask, SCHEDULE, num_steps=4, sampler="euler")
