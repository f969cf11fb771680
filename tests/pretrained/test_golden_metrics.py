"""Our stability and RDKit validity against EDM's `analyze_stability_for_molecules`,
`check_stability` and `BasicMolecularMetrics.compute_validity`, for QM9 and GEOM-Drugs.

The molecules are RDKit conformers of small (QM9) and drug-like (GEOM-Drugs, with S, Cl,
Br, I, P, Si) molecules at noise levels 0, 0.05, 0.15 and 0.3 Angstrom; the per-molecule
results are EDM's (`scripts/official_golden.py`).
"""

import numpy as np
import pytest

from symdiff_jax.metrics import rdkit_metrics, stability
from symdiff_jax.metrics.rdkit_metrics import xyz_smiles
from symdiff_jax.metrics.stability import stable_atoms


def _inputs(g, dataset):
    i = g.inp
    return i[f"{dataset}_positions"], i[f"{dataset}_atomic_numbers"], i[f"{dataset}_mask"]


@pytest.mark.parametrize("dataset", ["qm9", "geom"])
def test_stability(golden, dataset):
    g = golden("metrics")
    x, z, m = _inputs(g, dataset)
    ok = stable_atoms(x, z, m)
    np.testing.assert_array_equal(ok.sum(1), g.out[f"{dataset}_stable_atoms"])
    np.testing.assert_array_equal(np.all(ok | (m == 0), 1), g.out[f"{dataset}_molecule_stable"])
    scores = stability(x, z, m)
    assert scores["atom_stability"] == pytest.approx(g.out[f"{dataset}_atm_stable_fraction"])
    assert scores["molecule_stability"] == pytest.approx(g.out[f"{dataset}_mol_stable_fraction"])
    assert 0 < g.out[f"{dataset}_molecule_stable"].sum() < len(x)


@pytest.mark.parametrize("dataset", ["qm9", "geom"])
def test_validity(golden, dataset):
    g = golden("metrics")
    x, z, m = _inputs(g, dataset)
    expected = g.out[f"{dataset}_valid"]
    valid = [s is not None for s in xyz_smiles(x, z, m, limit_bonds_to_one=dataset == "geom")]
    np.testing.assert_array_equal(valid, expected)
    scores = rdkit_metrics(x, z, m, dataset=dataset)
    assert scores["validity"] == pytest.approx(expected.mean())


def test_geom_needs_its_own_setting(golden):
    """With QM9's bond orders the GEOM-Drugs molecules would score differently."""
    g = golden("metrics")
    x, z, m = _inputs(g, "geom")
    assert rdkit_metrics(x, z, m)["validity"] != pytest.approx(g.out["geom_valid"].mean())
