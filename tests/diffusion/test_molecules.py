"""Molecule diffusion: the symmetrised reverse kernel's law, the loss, the NLL, sampling.

Networks are tiny (width 16-32, 1-2 blocks) with randomised parameters, so that a
broken symmetry is visible (fresh SymDiff networks output exactly zero).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.data import featurise
from symdiff_jax.diffusion import ancestral_step, polynomial_schedule
from symdiff_jax.diffusion.molecules import (
    FeatureSpec,
    molecules_from_batch,
    nll_terms,
    sample_molecules,
    training_losses,
)
from symdiff_jax.groups import remove_com
from symdiff_jax.models.denoisers import DiTDenoiser, EGNNDenoiser, SymDiffDenoiser
from symdiff_jax.models.dit import DiT
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.models.gamma_net import GammaNet
from symdiff_jax.testing import assert_stochastically_equivariant, randomise_parameters

SPEC = FeatureSpec()
SCHEDULE = polynomial_schedule(1000)
MASK = np.array([1, 1, 0, 1, 1, 1, 0], np.float32)  # interleaved padding


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
    rng = np.random.default_rng(seed)
    m = jnp.asarray(mask)
    x = remove_com(jnp.asarray(rng.normal(size=(len(mask), 3)) * 1.3, jnp.float32) * m[:, None], m)
    charges = jnp.asarray(rng.choice([1, 6, 7, 8, 9], size=len(mask)) * (mask > 0), jnp.int32)
    return x, featurise(charges, m), charges


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


def batch_of(seeds, masks):
    xs, hs, qs = zip(*(molecule(s, m) for s, m in zip(seeds, masks, strict=True)), strict=True)
    return {
        "positions": jnp.stack(xs),
        "h": jnp.stack(hs),
        "charges": jnp.stack(qs),
        "mask": jnp.asarray(np.stack(masks)),
    }


MASKS = [MASK, np.array([1, 1, 1, 1, 1, 0, 0], np.float32), np.ones(7, np.float32)]


def test_loss_of_a_zero_denoiser_is_the_expected_noise_norm(key):
    """E||eps||^2 = (N - 1) 3 + N F on the CoM-free space: checks the noise and the scale."""

    def zero(k, x, h, t, mask):
        return jnp.zeros_like(x), jnp.zeros_like(h)

    reps = 400
    batch = batch_of(list(range(3)) * reps, MASKS * reps)
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
    model = make_denoiser("symdiff")
    graphdef, params = nnx.split(model)
    mol = molecules_from_batch(batch_of([0, 1, 2], MASKS), SPEC)

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
    from symdiff_jax.diffusion.molecules import own_orbit_eps_target

    x, _, _ = molecule(3, np.ones(7, np.float32))
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
    model = make_denoiser("symdiff")
    mol = molecules_from_batch(batch_of([0, 1, 2], MASKS), SPEC)
    out = jax.jit(
        lambda k: nll_terms(
            model, k, mol, SCHEDULE, log_prob_num_atoms=jnp.log(jnp.full((3,), 0.1))
        )
    )(key)
    parts = out["kl_prior"] + out["diffusion"] + out["log_z"] + out["loss_0"] - out["log_pn"]
    assert np.allclose(np.asarray(out["nll"]), np.asarray(parts), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(out["nll"])))
    assert np.all(np.asarray(out["diffusion"]) >= 0)


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


def test_unknown_options_are_rejected(key):
    model = make_denoiser("dit")
    mol = molecules_from_batch(batch_of([0], MASKS[:1]), SPEC)
    with pytest.raises(ValueError, match="x_target"):
        training_losses(model, key, mol, SCHEDULE, x_target="x0")
    with pytest.raises(ValueError, match="sampler"):
        sample_molecules(model, key, mol.mask, SCHEDULE, num_steps=4, sampler="euler")
