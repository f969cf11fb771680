"""energy_test: the statistic matches scipy's energy distance, the permutation
p-value has the stated size, and it has power against mean and covariance changes.

False-alarm rates: the size check compares the observed rejection rate with its
nominal value by an exact binomial test at level 1e-3; the power checks expect
p-values at the smallest attainable value. Seeds are fixed.
"""

import numpy as np
import pytest
import scipy.stats as st

from symdiff_jax.testing import energy_test
from symdiff_jax.testing.two_sample import energy_statistics, pairwise_distances


def test_statistic_matches_scipy_energy_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(0.5, 2.0, size=25)
    z = np.concatenate([a, b])[:, None]
    labels = np.concatenate([np.ones(40), np.zeros(25)])[:, None]
    ours = energy_statistics(pairwise_distances(z), labels)[0]
    # scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) for the empirical laws.
    expected = 40 * 25 / 65 * st.energy_distance(a, b) ** 2
    np.testing.assert_allclose(ours, expected, rtol=1e-10)
    result = energy_test(a[:, None], b[:, None], num_permutations=10)
    np.testing.assert_allclose(result.statistic, expected, rtol=1e-10)


@pytest.mark.parametrize("num_permutations, stop_after", [(19, None), (99, 5)])
def test_size_under_the_null(num_permutations, stop_after):
    """Under H0, P(p <= u) = u at the attainable levels u = 0.1 and 0.2.

    The fixed-B p-value (B = 19) takes the values k / 20; the sequential one
    (Besag-Clifford, h = 5, B = 99) takes 5 / l or k / 100. Both attain 0.1 and
    0.2, so the rejection rates must equal them; an off-by-one in the fixed-B
    p-value moves the rate by 0.05 (caught: 2000 replications, binomial test at
    level 1e-3).
    """
    rng = np.random.default_rng(1)
    reps = 2000
    pvalues = np.array(
        [
            energy_test(
                rng.normal(size=(8, 2)),
                rng.normal(size=(12, 2)),
                num_permutations=num_permutations,
                seed=i,
                stop_after=stop_after,
            ).pvalue
            for i in range(reps)
        ]
    )
    for level in (0.1, 0.2):
        rejections = int(np.sum(pvalues <= level + 1e-12))
        assert st.binomtest(rejections, reps, level).pvalue > 1e-3, (level, rejections)


def test_size_check_catches_an_anticonservative_test():
    """The size check itself can fail: a p-value that ignores permutations (p = 0.5 * U)."""
    rng = np.random.default_rng(2)
    rejections = int(np.sum(0.5 * rng.uniform(size=400) <= 0.05))
    assert st.binomtest(rejections, 400, 0.05).pvalue < 1e-3


def test_power_against_mean_and_covariance_changes():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 6))
    shifted = rng.normal(size=(300, 6)) + 0.4
    scaled = rng.normal(size=(300, 6)) * np.array([2.5, 1, 1, 1, 1, 1])
    for b in (shifted, scaled):
        assert energy_test(a, b, num_permutations=999).pvalue == pytest.approx(1 / 1000)


@pytest.mark.allow_nonfinite
def test_input_errors():
    with pytest.raises(ValueError, match="same number of features"):
        energy_test(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        energy_test(np.full((5, 2), np.nan), np.zeros((5, 2)))


def test_sequential_stopping_is_cheap_under_the_null_and_full_under_the_alternative():
    """Besag-Clifford stopping: few relabellings for a large p, all B for a tiny one."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    null = energy_test(a, b, num_permutations=5000, stop_after=10)
    assert null.num_permutations < 1000 and null.pvalue > 0.01
    full = energy_test(a, b + 1.0, num_permutations=5000, stop_after=10)
    assert full.num_permutations == 5000 and full.pvalue == pytest.approx(1 / 5001)
    fixed = energy_test(a, b, num_permutations=300, stop_after=None)
    assert fixed.num_permutations == 300
