"""The conformer symmetrised target over O(3)/SO(3) x Aut(G), against numpy float64 references.

Molecules are real (RDKit, hydrogens explicit, one ETKDG conformer with a fixed seed); Aut(G)
comes from `graph_automorphisms`. References written here: brute-force Monte Carlo over Haar
rotations (scipy `Rotation.random`, random signs for O(3)) times the enumerated
automorphisms, and Kabsch alignment (numpy SVD) over every automorphism and reflection.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.spatial.transform import Rotation

from symdiff_jax.groups import graph_automorphisms, pad_permutations
from symdiff_jax.targets.conformer_target import (
    chirality_group,
    conformer_symmetrised_target,
    conformer_target_in_form,
    conformer_target_mc,
    flow_path_coefficients,
    flow_velocity_target,
)
from tests.targets.references import haar_rotations, orbit_log_weights


@functools.cache
def _molecule(smiles: str, seed: int = 7):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    x = mol.GetConformer().GetPositions()
    return mol, x - x.mean(0)


@functools.cache
def _automorphisms(smiles: str, max_count=None):
    mol, _ = _molecule(smiles)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return graph_automorphisms(mol, max_count=max_count)


@functools.partial(jax.jit, static_argnames="group")
def _exact(x_t, x0, alpha, sigma, perms, mask=None, log_w=None, *, group):
    return conformer_symmetrised_target(
        x_t, x0, alpha, sigma, perms, group=group, mask=mask, bank_log_weights=log_w
    )


def _noisy(x0, perm, alpha, sigma, seed, improper=False):
    """x_t = alpha R0 x0[perm] + sigma eps, centred (R0 fixed by the seed)."""
    rng = np.random.default_rng(seed)
    R0 = Rotation.random(random_state=seed).as_matrix()
    if improper:
        R0 = -R0
    x_t = alpha * x0[perm] @ R0.T + sigma * rng.normal(size=x0.shape)
    return x_t - x_t.mean(0)


def _numpy_mc(x_t, x0, alpha, sigma, perms, improper, n=600_000, seed=0):
    """phi_G by self-normalised Monte Carlo over Haar SO(3) (x {+-I} for O(3)) with every
    automorphism enumerated, in float64. Returns (estimate, effective sample size)."""
    Rf = haar_rotations(n, improper, seed).reshape(n, 9)
    ys = [x0[p] for p in perms]
    logits = np.stack([orbit_log_weights(x_t, y, alpha, sigma, Rf) for y in ys])
    w = np.exp(logits - logits.max())
    ess = w.sum() ** 2 / (w**2).sum()
    w /= w.sum()
    est = sum(y @ (wp @ Rf).reshape(3, 3).T for y, wp in zip(ys, w, strict=True))
    return est, ess


def _kabsch(x, y):
    """Rotation R (det +1) minimising ||x - y R^T|| (numpy SVD)."""
    u, _, vt = np.linalg.svd(x.T @ y)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _best_aligned(x_t, x0, perms, improper):
    """The Kabsch-aligned x0[p] (or its mirror image for O(3)) closest to x_t."""
    best, best_d = None, np.inf
    for p in perms:
        for s in (1.0, -1.0) if improper else (1.0,):
            y = s * x0[p]
            z = y @ _kabsch(x_t, y).T
            d = np.sum((x_t - z) ** 2)
            if d < best_d:
                best, best_d = z, d
    return best


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_automorphism_group_sizes():
    """Aut(G) sizes of the test molecules: ethanol 3! * 2 = 12, acetic acid 3! = 6."""
    assert _automorphisms("CCO").shape == (12, 9)
    assert _automorphisms("CC(=O)O").shape == (6, 8)
    assert _automorphisms("CC(C)(C)C", 24).shape == (24, 17)


@pytest.mark.parametrize(
    "smiles, max_count, group",
    [("CCO", None, "O3"), ("CCO", None, "SO3"), ("CC(=O)O", None, "O3"), ("CC(C)(C)C", 24, "O3")],
)
def test_exact_matches_brute_force_monte_carlo(x64, smiles, max_count, group):
    """Exact O(3)/SO(3) x Aut(G) target = float64 Monte Carlo over 6e5 Haar rotations times
    the enumerated automorphisms (relative error < 1e-2; the reference's effective sample
    size is checked to be >= 2,000, i.e. its own relative error is a few 1e-3). For the
    capped neopentane list both sides average over the same 24 permutations. The test has
    power: dropping the automorphisms changes the target by far more than the tolerance."""
    _, x0 = _molecule(smiles)
    perms = _automorphisms(smiles, max_count)
    alpha, sigma = (0.6, 0.8) if max_count else (0.7, 0.7)
    x_t = _noisy(x0, perms[-1], alpha, sigma, seed=3)
    exact = _exact(x_t, x0[None], alpha, sigma, jnp.asarray(perms), group=group)
    ref, ess = _numpy_mc(x_t, x0, alpha, sigma, perms, improper=group == "O3")
    assert ess > 2_000
    assert np.all(np.isfinite(exact))
    assert _rel(exact, ref) < 1e-2
    no_perm, _ = _numpy_mc(x_t, x0, alpha, sigma, perms[:1], improper=group == "O3")
    assert _rel(no_perm, ref) > 0.1


@pytest.mark.parametrize("smiles, group", [("CCO", "O3"), ("CC(=O)O", "O3"), ("CCO", "SO3")])
def test_small_sigma_tends_to_best_aligned_x0(smiles, group):
    """As sigma -> 1e-3 (float32) the target is finite and equals the Kabsch-aligned x0 under
    the best automorphism (and reflection for O(3)), computed with numpy SVD."""
    _, x0 = _molecule(smiles)
    perms = _automorphisms(smiles)
    alpha, sigma = 0.999, 1e-3
    x_t = _noisy(x0, perms[len(perms) // 2], alpha, sigma, seed=5, improper=group == "O3")
    out = np.asarray(
        _exact(
            jnp.asarray(x_t, jnp.float32),
            jnp.asarray(x0[None], jnp.float32),
            alpha,
            sigma,
            jnp.asarray(perms),
            group=group,
        )
    )
    assert np.all(np.isfinite(out))
    ref = _best_aligned(x_t, x0, perms, improper=group == "O3")
    np.testing.assert_allclose(out, ref, atol=2e-3)


def test_so3_and_o3_differ_for_chiral_molecule():
    """For butan-2-ol with an assigned stereocentre chirality_group says SO3; with x_t near
    the mirror image of the conformer, the O(3) target follows the mirror image while the
    SO(3) target cannot, so the two differ by much more than round-off."""
    mol, x0 = _molecule("C[C@@H](O)CC")
    assert chirality_group(mol) == "SO3"
    perms = _automorphisms("C[C@@H](O)CC")
    alpha, sigma = 0.95, 0.1
    x_t = _noisy(x0, perms[0], alpha, sigma, seed=11, improper=True)
    o3 = np.asarray(_exact(x_t, x0[None], alpha, sigma, jnp.asarray(perms), group="O3"))
    so3 = np.asarray(_exact(x_t, x0[None], alpha, sigma, jnp.asarray(perms), group="SO3"))
    assert _rel(o3, so3) > 0.1
    np.testing.assert_allclose(o3, _best_aligned(x_t, x0, perms, True), atol=0.05)


def test_chirality_group_rules():
    """O3 without assigned stereocentres (ethanol, unassigned butan-2-ol), SO3 with one, and
    SO3 for the unassigned stereocentre when include_unassigned=True; E/Z stereo alone is O3."""
    assert chirality_group(Chem.MolFromSmiles("CCO")) == "O3"
    assert chirality_group(Chem.MolFromSmiles("CC(O)CC")) == "O3"
    assert chirality_group(Chem.MolFromSmiles("CC(O)CC"), include_unassigned=True) == "SO3"
    assert chirality_group(Chem.MolFromSmiles("C[C@H](O)CC")) == "SO3"
    assert chirality_group(Chem.MolFromSmiles("C/C=C/C")) == "O3"
    with pytest.raises(ValueError, match="rdkit"):
        chirality_group("CCO")


def test_equivariance_under_rotation_and_automorphism():
    """phi(R x_t) = R phi(x_t) for R in O(3), and phi(x_t[p]) = phi(x_t)[p] for p in Aut(G)."""
    _, x0 = _molecule("CCO")
    perms = _automorphisms("CCO")
    x_t = _noisy(x0, perms[4], 0.8, 0.5, seed=2)
    R = -Rotation.random(random_state=9).as_matrix()  # improper
    base = np.asarray(_exact(x_t, x0[None], 0.8, 0.5, jnp.asarray(perms), group="O3"))
    rotated = np.asarray(_exact(x_t @ R.T, x0[None], 0.8, 0.5, jnp.asarray(perms), group="O3"))
    np.testing.assert_allclose(rotated, base @ R.T, atol=1e-4)
    p = perms[7]
    permuted = np.asarray(_exact(x_t[p], x0[None], 0.8, 0.5, jnp.asarray(perms), group="O3"))
    np.testing.assert_allclose(permuted, base[p], atol=1e-4)


@pytest.mark.allow_nonfinite
def test_padding_and_bank_weights(x64):
    """Padded atoms (mask 0, automorphisms given on the real atoms only) leave the real rows
    unchanged and come back zero; an uncentred bank is centred; a bank of two conformers
    with log weights (0, -inf) equals the first alone."""
    _, x0 = _molecule("CC(=O)O")
    perms = _automorphisms("CC(=O)O")
    n, pad = x0.shape[0], 3
    x_t = _noisy(x0, perms[2], 0.8, 0.6, seed=4)
    ref = np.asarray(_exact(x_t, x0[None], 0.8, 0.6, jnp.asarray(perms), group="O3"))
    xp = np.zeros((n + pad, 3))
    xp[:n] = x_t
    bank = np.zeros((1, n + pad, 3))
    bank[0, :n] = x0 + np.array([1.0, -2.0, 0.5])  # shifted: centred inside
    mask = (np.arange(n + pad) < n).astype(float)
    out = np.asarray(_exact(xp, bank, 0.8, 0.6, jnp.asarray(perms), jnp.asarray(mask), group="O3"))
    np.testing.assert_allclose(out[:n], ref, atol=1e-10)
    np.testing.assert_array_equal(out[n:], 0.0)
    _, other = _molecule("CC(=O)O", seed=123)
    two = np.stack([x0, other])
    w = jnp.array([0.0, -jnp.inf])
    out2 = np.asarray(_exact(x_t, two, 0.8, 0.6, jnp.asarray(perms), None, w, group="O3"))
    np.testing.assert_allclose(out2, ref, atol=1e-10)
    # Without a mask the zero rows count as atoms: automorphisms given on the n real atoms
    # must be extended by fixing the others, exactly as pad_permutations does.
    full = pad_permutations(perms, n + pad)
    auto = np.asarray(_exact(xp, bank, 0.8, 0.6, jnp.asarray(perms), group="O3"))
    explicit = np.asarray(_exact(xp, bank, 0.8, 0.6, jnp.asarray(full), group="O3"))
    np.testing.assert_allclose(auto, explicit, atol=1e-10)


def test_monte_carlo_converges_to_exact(key):
    """conformer_target_mc (all automorphisms) approaches the exact target as the number of
    rotations grows: the mean relative error over 4 keys falls by > 3x from 16 to 16,384
    rotations (O(1/sqrt K) predicts 32x) and ends below 0.04. Truncating the automorphism
    list to the identity leaves a large error; a cap at the group size changes nothing."""
    _, x0 = _molecule("CCO")
    perms = jnp.asarray(_automorphisms("CCO"))
    alpha, sigma = 0.5, 0.85
    x_t = _noisy(x0, np.asarray(perms[-1]), alpha, sigma, seed=3)
    exact = np.asarray(_exact(x_t, x0[None], alpha, sigma, perms, group="O3"))

    @functools.partial(jax.jit, static_argnums=(1, 2))
    def estimates(keys, num_rotations, num_permutations):
        def one(k):
            return conformer_target_mc(
                k,
                x_t,
                x0[None],
                alpha,
                sigma,
                perms,
                group="O3",
                num_rotations=num_rotations,
                num_permutations=num_permutations,
            )

        return jax.vmap(one)(keys)

    def err(num_rotations, num_permutations=None):
        est = np.asarray(estimates(jax.random.split(key, 4), num_rotations, num_permutations))
        return np.mean([_rel(e, exact) for e in est])

    small, large = err(16), err(16384)
    assert large < small / 3
    assert large < 0.04
    assert err(16384, 1) > 0.1
    assert err(16384, 12) == err(16384, None)  # all 12 automorphisms: nothing truncated


def test_flow_velocity_forms():
    """With x1* = x1 on the straight path all three velocity forms equal x1 - x0; "two_sided"
    equals paper 000's code formula h x_t + f A - g x0 (f = 1/(2(1-t)), g = 1/(2t),
    h = (1-2t)/(2t(1-t))); the path coefficients are (t, sqrt((1-t)^2 + s^2 t(1-t)))."""
    rng = np.random.default_rng(0)
    x1, x0 = rng.normal(size=(2, 2, 7, 3))
    t = np.array([0.3, 0.8])
    x_t = t[:, None, None] * x1 + (1 - t[:, None, None]) * x0
    for form in ("endpoint", "difference", "two_sided"):
        u = flow_velocity_target(x1, x_t, t, x_prior=x0, form=form)
        np.testing.assert_allclose(u, x1 - x0, atol=1e-5)
    a = rng.normal(size=x1.shape)
    tt = t[:, None, None]
    f, g, h = 1 / (2 * (1 - tt)), 1 / (2 * tt), (1 - 2 * tt) / (2 * tt * (1 - tt))
    u = flow_velocity_target(a, x_t, t, x_prior=x0, form="two_sided")
    np.testing.assert_allclose(u, h * x_t + f * a - g * x0, atol=1e-5)
    u = conformer_target_in_form(a, x_t, form="velocity", t=t)
    np.testing.assert_allclose(u, (a - x_t) / (1 - tt), atol=1e-5)
    alpha, sigma = flow_path_coefficients(0.25, 0.1)
    np.testing.assert_allclose([alpha, sigma], [0.25, np.sqrt(0.75**2 + 0.01 * 0.25 * 0.75)])
    with pytest.raises(ValueError, match="x_prior"):
        flow_velocity_target(a, x_t, t, form="difference")
    with pytest.raises(ValueError, match="velocity form"):
        flow_velocity_target(a, x_t, t, form="x1")


def test_diffusion_forms_recover_the_noise():
    """eps-form of the data target is the true noise (per-example alpha, sigma); v = alpha eps
    - sigma x0; unknown forms raise."""
    rng = np.random.default_rng(1)
    x0, eps = rng.normal(size=(2, 3, 5, 3))
    alpha = np.array([0.9, 0.5, 0.2])
    sigma = np.sqrt(1 - alpha**2)
    x_t = alpha[:, None, None] * x0 + sigma[:, None, None] * eps
    out = conformer_target_in_form(x0, x_t, form="eps", alpha=alpha, sigma=sigma)
    np.testing.assert_allclose(out, eps, atol=1e-5)
    v = conformer_target_in_form(x0, x_t, form="v", alpha=alpha, sigma=sigma)
    np.testing.assert_allclose(v, alpha[:, None, None] * eps - sigma[:, None, None] * x0, atol=1e-5)
    np.testing.assert_array_equal(conformer_target_in_form(x0, x_t, form="x0"), x0)
    with pytest.raises(ValueError, match="Unknown target form"):
        conformer_target_in_form(x0, x_t, form="score")


def test_input_errors():
    """Wrong group names and shapes are rejected with messages naming the problem."""
    _, x0 = _molecule("CCO")
    perms = _automorphisms("CCO")
    with pytest.raises(ValueError, match="group must be one of"):
        conformer_symmetrised_target(x0, x0, 1.0, 0.5, perms, group="O2")
    with pytest.raises(ValueError, match="x0_bank"):
        conformer_symmetrised_target(x0, x0[:, :2], 1.0, 0.5, perms)
    with pytest.raises(ValueError, match="act on 10 atoms"):
        conformer_symmetrised_target(x0, x0, 1.0, 0.5, np.zeros((1, 10), np.int32))
    with pytest.raises(ValueError, match="integer"):
        conformer_symmetrised_target(x0, x0, 1.0, 0.5, perms.astype(float))
    with pytest.raises(ValueError, match="num_rotations"):
        conformer_target_mc(jax.random.key(0), x0, x0, 1.0, 0.5, perms, num_rotations=0)
