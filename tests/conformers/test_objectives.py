"""Conformer objectives: the flow path, its velocity, padded automorphism rows, the losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from symdiff_jax.conformers.datasets import conformer_batch, table_from_mols
from symdiff_jax.conformers.objectives import (
    batch_symmetrised_target,
    diffusion_losses,
    flow_interpolant,
    flow_matching_losses,
    masked_mse,
    path_noise_derivative,
)
from symdiff_jax.data.geom_features import GEOM_QM9_ELEMENTS
from symdiff_jax.diffusion import polynomial_schedule
from symdiff_jax.targets.conformer_target import conformer_symmetrised_target


def _table(smiles=("Cc1ccccc1", "CC(C)(C)O", "CCO"), max_atoms=16, width=None):
    mols, positions = [], []
    for k, s in enumerate(smiles):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(mol, randomSeed=k + 1)
        positions.append(mol.GetConformer().GetPositions()[None])
        mol.RemoveAllConformers()
        mols.append(mol)
    return table_from_mols(
        mols, positions, elements=GEOM_QM9_ELEMENTS, max_atoms=max_atoms, max_automorphisms=width
    )


def _batch(table, width):
    b = conformer_batch(table, np.arange(len(table["positions"])), automorphism_width=width)
    return {k: jnp.asarray(v) for k, v in b.items()}


def test_flow_path_endpoints_and_noise_derivative():
    rng = np.random.default_rng(0)
    x0, x1, eps = (jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32) for _ in range(3))
    near0 = flow_interpolant(x0, x1, eps, jnp.array([1e-7, 1e-7]), 0.1)
    near1 = flow_interpolant(x0, x1, eps, jnp.array([1 - 1e-7, 1 - 1e-7]), 0.1)
    np.testing.assert_allclose(near0, x0, atol=1e-3)
    np.testing.assert_allclose(near1, x1, atol=1e-3)
    # d/dt of s sqrt(t (1 - t)) by central differences (float64 numpy).
    for t in (0.1, 0.5, 0.83):
        h = 1e-6
        fd = (0.1 * np.sqrt((t + h) * (1 - t - h)) - 0.1 * np.sqrt((t - h) * (1 - t + h))) / (2 * h)
        np.testing.assert_allclose(float(path_noise_derivative(t, 0.1)), fd, rtol=1e-4)


def test_padded_automorphism_rows_do_not_change_the_target():
    """Batch target with K padded rows == the per-molecule target on its own group.

    Without the row mask the padded identity rows would re-weight the identity; the
    second half of the test shows the unmasked computation does differ (the bug the mask
    prevents).
    """
    table = _table()
    batch = _batch(table, width=16)
    key = jax.random.key(0)
    x_t = 0.6 * batch["positions"] + 0.5 * jax.random.normal(key, batch["positions"].shape)
    x_t = x_t * batch["mask"][..., None]
    phi = jax.jit(batch_symmetrised_target, static_argnums=4)(batch, x_t, 0.6, 0.5, "O3")
    target = jax.jit(conformer_symmetrised_target)
    offsets = table["aut_offsets"]
    for b in range(len(table["num_atoms"])):
        perms = jnp.asarray(table["automorphisms"][offsets[b] : offsets[b + 1]].astype(np.int32))
        ref = target(x_t[b], batch["bank"][b], 0.6, 0.5, perms, mask=batch["mask"][b])
        np.testing.assert_allclose(phi[b], ref, atol=2e-5)
    unmasked = target(
        x_t[0], batch["bank"][0], 0.6, 0.5, batch["automorphisms"][0], mask=batch["mask"][0]
    )
    assert float(jnp.abs(unmasked - phi[0]).max()) > 1e-3


def test_masked_mse_matches_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    expected = [((a[i] - b[i]) ** 2)[mask[i] > 0].mean() for i in range(2)]
    np.testing.assert_allclose(
        masked_mse(jnp.asarray(a), jnp.asarray(b), jnp.asarray(mask)), expected, rtol=1e-5
    )


class _Oracle:
    """A 'network' returning a fixed field: lets the tests read the regression target."""

    def __init__(self):
        self.seen = None

    def __call__(self, key, x, graph, t, mask):
        self.seen = x
        return jnp.zeros_like(x)


@pytest.mark.parametrize(
    "x_target, group", [("data", "O3"), ("symmetrised", "O3"), ("symmetrised", "SO3")]
)
@pytest.mark.allow_nonfinite  # padded bank entries carry log weight -inf
def test_flow_losses_are_per_example_and_finite(x_target, group):
    table = _table()
    batch = _batch(table, width=8)
    out = flow_matching_losses(_Oracle(), jax.random.key(2), batch, x_target=x_target, group=group)
    assert out["loss"].shape == (3,) and np.isfinite(np.asarray(out["loss"])).all()
    # With a zero network the loss is the mean squared target.
    np.testing.assert_allclose(out["loss"], out["target_norm"] ** 2, rtol=1e-5)


def test_symmetrised_and_data_flow_targets_agree_when_the_orbit_is_trivial_and_noise_small():
    """At t -> 1 with no path noise, phi_G -> the Kabsch/automorphism-aligned data, and both
    velocity targets reduce to (x1 - x0) for a conformer already in its best pose."""
    table = _table(("CCO",))
    batch = _batch(table, width=1)
    common = dict(path_sigma=0.0, t_range=(0.98, 0.98), prior="gaussian")
    data = flow_matching_losses(_Oracle(), jax.random.key(3), batch, x_target="data", **common)
    sym = flow_matching_losses(
        _Oracle(), jax.random.key(3), batch, x_target="symmetrised", group="O3", **common
    )
    np.testing.assert_allclose(sym["target_norm"], data["target_norm"], rtol=0.05)


@pytest.mark.allow_nonfinite  # padded bank entries carry log weight -inf
@pytest.mark.parametrize("x_target", ["data", "symmetrised"])
@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_diffusion_losses(x_target, prediction):
    table = _table()
    batch = _batch(table, width=8)
    schedule = polynomial_schedule(100)
    out = diffusion_losses(
        _Oracle(), jax.random.key(4), batch, schedule, x_target=x_target, prediction=prediction
    )
    assert out["loss"].shape == (3,) and np.isfinite(np.asarray(out["loss"])).all()
