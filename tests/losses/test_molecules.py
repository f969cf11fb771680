"""SymDiff's molecule objective and NLL bound: scale, gradients, target limit, bookkeeping.

Networks are tiny (width 16-32, one block) with randomised parameters, so that every
path carries signal (fresh SymDiff networks output exactly zero).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.diffusion import polynomial_schedule
from symdiff_jax.diffusion.molecules import FeatureSpec, molecules_from_batch
from symdiff_jax.groups import remove_com
from symdiff_jax.losses.molecules import nll_terms, own_orbit_eps_target, training_losses
from symdiff_jax.models.denoisers import SymDiffDenoiser
from symdiff_jax.models.dit import DiT
from symdiff_jax.models.gamma_net import GammaNet
from symdiff_jax.testing import randomise_parameters
from symdiff_jax.testing.fake_data import random_molecule, random_molecule_batch

SPEC = FeatureSpec()
SCHEDULE = polynomial_schedule(1000)
MASKS = [
    np.array([1, 1, 0, 1, 1, 1, 0], np.float32),  # interleaved padding
    np.array([1, 1, 1, 1, 1, 0, 0], np.float32),
    np.ones(7, np.float32),
]


def symdiff_denoiser(seed=0, scale=0.3):
    """A DiT symmetrised by a learned gamma, with randomised parameters."""
    rngs = nnx.Rngs(seed)
    dit = DiT(6, hidden=32, depth=1, heads=2, node_embed=16, num_gaussians=8, rngs=rngs)
    gamma = GammaNet(
        hidden=16, depth=1, heads=2, decoder_hidden=8, distance_embedding=dit.distance_embedding,
        rngs=rngs,
    )  # fmt: skip
    return randomise_parameters(SymDiffDenoiser(dit, gamma), jax.random.key(seed + 11), scale)


def test_loss_of_a_zero_denoiser_is_the_expected_noise_norm(key):
    """E||eps||^2 = (N - 1) 3 + N F on the CoM-free space: checks the noise and the scale."""

    def zero(k, x, h, t, mask):
        return jnp.zeros_like(x), jnp.zeros_like(h)

    reps = 400
    batch = random_molecule_batch(list(range(3)) * reps, MASKS * reps)
    mol = molecules_from_batch(batch, SPEC)
    out = training_losses(zero, key, mol, SCHEDULE, num_steps=1000, spec=SPEC, max_atoms=29)
    error = np.asarray(out["error"]).reshape(reps, 3)
    n = np.array([m.sum() for m in MASKS])
    expected = (n - 1) * 3 + n * 6
    assert np.allclose(error.mean(0), expected, rtol=0.05)
    loss = np.asarray(out["loss"]).reshape(reps, 3)
    # Rows with t > 0 (all but ~1/1000) are 0.5 * error / ((3 + F) * 29), plus a tiny KL.
    assert np.allclose(np.median(loss / error, 0), 0.5 / (9 * 29), rtol=5e-3)


@pytest.mark.parametrize("x_target", ["data", "symmetrised"])
def test_loss_is_finite_and_differentiable(key, x_target):
    model = symdiff_denoiser()
    graphdef, params = nnx.split(model)
    mol = molecules_from_batch(random_molecule_batch([0, 1, 2], MASKS), SPEC)

    def mean_loss(p):
        out = training_losses(
            nnx.merge(graphdef, p), key, mol, SCHEDULE, x_target=x_target, augment_group="O3"
        )
        return jnp.mean(out["loss"])

    loss, grads = jax.jit(jax.value_and_grad(mean_loss))(params)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)) > 0


def test_symmetrised_eps_target_at_low_noise_drops_the_rotational_part_of_the_noise(key):
    """As sigma -> 0 the posterior over the orbit concentrates at the rotation that best
    aligns x0 to z_t, which absorbs the part of eps tangent to the orbit: the eps-form
    target tends to eps minus its projection on {x0 A^T : A skew} (numpy least squares).
    At large sigma it is far from that."""
    x, _, _ = random_molecule(3, np.ones(7, np.float32))
    x = x[None]
    m = jnp.ones((1, 7))
    eps = remove_com(jax.random.normal(key, x.shape), m)
    generators = [np.array(g, float) for g in (
        [[0, -1, 0], [1, 0, 0], [0, 0, 0]], [[0, 0, 1], [0, 0, 0], [-1, 0, 0]],
        [[0, 0, 0], [0, 0, -1], [0, 1, 0]],
    )]  # fmt: skip
    x_np, eps_np = np.asarray(x[0], float), np.asarray(eps[0], float)
    tangent = np.stack([(x_np @ g.T).ravel() for g in generators], 1)
    coef, *_ = np.linalg.lstsq(tangent, eps_np.ravel(), rcond=None)
    expected = eps_np - (tangent @ coef).reshape(eps_np.shape)
    errors = {}
    for sigma in (1e-3, 0.9):
        s = jnp.array([sigma])
        a = jnp.sqrt(1 - s**2)
        z = a[:, None, None] * x + s[:, None, None] * eps
        target = np.asarray(own_orbit_eps_target(z, x, a, s, m))[0]
        errors[sigma] = np.abs(target - expected).max()
    assert errors[1e-3] < 1e-2 < errors[0.9]


def test_nll_terms_are_finite_and_add_up(key):
    model = symdiff_denoiser()
    mol = molecules_from_batch(random_molecule_batch([0, 1, 2], MASKS), SPEC)
    out = jax.jit(
        lambda k: nll_terms(
            model, k, mol, SCHEDULE, log_prob_num_atoms=jnp.log(jnp.full((3,), 0.1))
        )
    )(key)
    parts = out["kl_prior"] + out["diffusion"] + out["log_z"] + out["loss_0"] - out["log_pn"]
    assert np.allclose(np.asarray(out["nll"]), np.asarray(parts), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(out["nll"])))
    assert np.all(np.asarray(out["diffusion"]) >= 0)


def test_unknown_x_target_is_rejected(key):
    mol = molecules_from_batch(random_molecule_batch([0], MASKS[:1]), SPEC)

    def zero(k, x, h, t, mask):
        return jnp.zeros_like(x), jnp.zeros_like(h)

    with pytest.raises(ValueError, match="x_target"):
        training_losses(zero, key, mol, SCHEDULE, x_target="x0")
