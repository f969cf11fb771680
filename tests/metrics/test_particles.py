"""Particle metrics against POT's general solver, sorted-sample formulas and hand counts."""

import numpy as np
import ot
import pytest

from symdiff_jax.metrics.particles import (
    distance_histograms,
    distance_tv,
    distance_w2,
    energy_w2,
    high_energy_fraction,
    particle_metrics,
    reference_metrics,
)
from symdiff_jax.systems import double_well_energy


def test_energy_w2_is_squared_w2():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(1.0, 2.0, size=40)
    # Equal sizes in 1-D: the optimal plan matches sorted samples.
    np.testing.assert_allclose(energy_w2(a, b), np.mean((np.sort(a) - np.sort(b)) ** 2), rtol=1e-10)
    c = rng.normal(size=25)
    general = ot.emd2(np.full(40, 1 / 40), np.full(25, 1 / 25), (a[:, None] - c[None]) ** 2)
    np.testing.assert_allclose(energy_w2(a, c), general, rtol=1e-8)


def test_distance_histograms_and_tv_by_hand():
    # One 2-atom system each: distances 1 and 3; shared bins over [1, 3].
    x = np.array([[[0.0, 0.0], [1.0, 0.0]]])
    y = np.array([[[0.0, 0.0], [3.0, 0.0]]])
    p, q, centres = distance_histograms(x, y, num_bins=4)
    np.testing.assert_allclose(p, [1, 0, 0, 0])
    np.testing.assert_allclose(q, [0, 0, 0, 1])
    np.testing.assert_allclose(centres, [1.25, 1.75, 2.25, 2.75])
    assert distance_tv(x, y, num_bins=4) == pytest.approx(1.0)
    assert distance_tv(x, x, num_bins=4) == pytest.approx(0.0)
    # W2^2 between point masses at bin centres 1.25 and 2.75.
    assert distance_w2(x, y, num_bins=4) == pytest.approx(1.5**2)


def test_distance_w2_matches_general_solver():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4, 2)), 1.3 * rng.normal(size=(20, 4, 2))
    p, q, c = distance_histograms(x, y, num_bins=200)
    np.testing.assert_allclose(
        distance_w2(x, y), ot.emd2(p, q, (c[:, None] - c[None]) ** 2), rtol=1e-7, atol=1e-12
    )


def test_particle_metrics_keys():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 4, 2)) * 3
    out = particle_metrics(x, x, double_well_energy)
    assert out == {
        "energy_w2": 0.0,
        "distance_w2": 0.0,
        "distance_tv": 0.0,
        "high_energy_frac": 0.0,
    }


def test_high_energy_fraction_by_hand():
    reference = np.array([-3.0, 1.0, 2.0])
    # 2.0 ties the highest reference energy (not above it); 2.5, inf and nan count.
    samples = np.array([-10.0, 0.0, 2.0, 2.5, np.inf, np.nan, -np.inf, 1.5])
    assert high_energy_fraction(samples, reference) == pytest.approx(4 / 8)
    assert high_energy_fraction(reference, reference) == 0.0


def test_reference_metrics_reads_the_split(tmp_path):
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(12, 4, 2)) * 3
    np.save(tmp_path / "val_split_DW4.npy", (ref + 1.0).reshape(12, 8).astype(np.float32))
    samples = rng.normal(size=(9, 4, 2)) * 3
    centred = ref - ref.mean(axis=1, keepdims=True)
    expected = particle_metrics(samples, centred, double_well_energy)
    got = reference_metrics(samples, str(tmp_path), "dw4", "val")
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-4, abs=1e-6)
    with pytest.raises(FileNotFoundError, match="test_split_DW4.npy"):
        reference_metrics(samples, str(tmp_path), "dw4", "test")
