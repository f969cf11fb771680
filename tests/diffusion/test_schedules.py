"""Noise schedules: EDM's polynomial_2 against an independent re-derivation, VP identities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.diffusion import (
    Schedule,
    cosine_schedule,
    discrete_schedule,
    get_schedule,
    linear_schedule,
    polynomial_schedule,
)


def _edm_polynomial_gammas(T=1000, precision=1e-5, power=2.0):
    """EDM's published polynomial schedule, step by step in plain Python floats (float64).

    1. alpha^2_i = (1 - (i / T)^power)^2 for i = 0..T;
    2. ratios r_i = alpha^2_i / alpha^2_{i-1} with alpha^2_{-1} := 1, clipped to [0.001, 1];
    3. alpha^2_i = r_0 r_1 ... r_i;
    4. alpha^2_i = (1 - 2 precision) alpha^2_i + precision;
    5. gamma_i = -(log alpha^2_i - log(1 - alpha^2_i)).
    """
    raw = [(1.0 - (i / T) ** power) ** 2 for i in range(T + 1)]
    previous, product, gammas = 1.0, 1.0, []
    for value in raw:
        ratio = min(max(value / previous, 0.001), 1.0)
        previous = value
        product *= ratio
        a2 = (1.0 - 2.0 * precision) * product + precision
        gammas.append(-(math.log(a2) - math.log(1.0 - a2)))
    return np.array(gammas)


def _nichol_dhariwal_cosine_gammas(T=1000, s=0.008):
    """Nichol & Dhariwal (2021) eq. 17 with betas clipped at 0.999, as EDM discretises it:
    f on the T + 2 points j / (T + 1), betas from consecutive ratios, alpha^2 = prod(1 - beta).
    """
    f = [math.cos((j / (T + 1) + s) / (1 + s) * math.pi / 2) ** 2 for j in range(T + 2)]
    product, gammas = 1.0, []
    for j in range(T + 1):
        beta = min(max(1.0 - f[j + 1] / f[j], 0.0), 0.999)
        product *= 1.0 - beta
        gammas.append(math.log(1.0 - product) - math.log(product))
    return np.array(gammas)


def test_polynomial_2_matches_edm_construction_on_every_grid_point(x64):
    """All 1001 grid values of polynomial_2 (T=1000, precision 1e-5) agree to 1e-6."""
    ref = _edm_polynomial_gammas()
    sched = polynomial_schedule(num_steps=1000, precision=1e-5, power=2)
    t = jnp.arange(1001, dtype=jnp.float64) / 1000
    got = np.asarray(sched.gamma(t))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_polynomial_2_other_settings_match_edm_construction(x64):
    ref = _edm_polynomial_gammas(T=200, precision=1e-4, power=3.0)
    sched = polynomial_schedule(num_steps=200, precision=1e-4, power=3)
    got = np.asarray(sched.gamma(jnp.arange(201, dtype=jnp.float64) / 200))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_polynomial_2_float32_lookup_matches_reference():
    ref = _edm_polynomial_gammas()
    sched = polynomial_schedule()
    got = np.asarray(sched.gamma(jnp.arange(1001, dtype=jnp.float32) / 1000))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_polynomial_2_endpoints():
    sched = polynomial_schedule()
    assert float(sched.gamma(0.0)) == pytest.approx(-11.513, abs=1e-3)
    assert float(sched.gamma(1.0)) == pytest.approx(11.513, abs=1e-3)
    assert float(sched.gamma(0.0)) == pytest.approx(-math.log((1 - 1e-5) / 1e-5), abs=1e-4)


def test_grid_lookup_rounds_to_nearest_index(x64):
    """t between grid points takes the value of the nearest grid point, as EDM's round()."""
    ref = _edm_polynomial_gammas()
    sched = polynomial_schedule()
    i = np.arange(0, 1000)
    below = np.asarray(sched.gamma(jnp.asarray((i + 0.45) / 1000)))
    above = np.asarray(sched.gamma(jnp.asarray((i + 0.55) / 1000)))
    np.testing.assert_allclose(below, ref[i], atol=1e-12)
    np.testing.assert_allclose(above, ref[i + 1], atol=1e-12)
    # Out-of-range times clip to the ends.
    assert float(sched.gamma(-0.3)) == pytest.approx(ref[0])
    assert float(sched.gamma(1.7)) == pytest.approx(ref[-1])


def test_cosine_matches_nichol_dhariwal_construction(x64):
    ref = _nichol_dhariwal_cosine_gammas()
    sched = cosine_schedule(num_steps=1000)
    got = np.asarray(sched.gamma(jnp.arange(1001, dtype=jnp.float64) / 1000))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_linear_schedule_endpoints_and_slope(x64):
    sched = linear_schedule(gamma_min=-13.3, gamma_max=5.0)
    t = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(np.asarray(sched.gamma(t)), -13.3 + 18.3 * np.asarray(t), atol=1e-12)
    slope = jax.grad(lambda s: sched.gamma(s))(0.3)
    assert float(slope) == pytest.approx(18.3)


SCHEDULES = {
    "polynomial_2": polynomial_schedule,
    "cosine": cosine_schedule,
    "linear": linear_schedule,
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_variance_preserving_identities(name, x64):
    sched = SCHEDULES[name]()
    t = jnp.asarray(np.random.default_rng(0).uniform(size=(7, 5)))
    alpha, sigma = sched.alpha(t), sched.sigma(t)
    assert alpha.shape == t.shape
    np.testing.assert_allclose(np.asarray(alpha**2 + sigma**2), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sched.snr(t)), np.asarray(alpha**2 / sigma**2), rtol=1e-9)
    a2, s2 = sched.alpha_sigma(t)
    np.testing.assert_allclose(np.asarray(a2), np.asarray(alpha), atol=1e-15)
    np.testing.assert_allclose(np.asarray(s2), np.asarray(sigma), atol=1e-15)
    # gamma = -log SNR = log(sigma^2) - log(alpha^2).
    np.testing.assert_allclose(
        np.asarray(sched.gamma(t)), np.log(np.asarray(sigma**2 / alpha**2)), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_snr_strictly_decreasing(name, x64):
    sched = SCHEDULES[name]()
    n = sched.num_steps or 2000
    t = jnp.arange(n + 1, dtype=jnp.float64) / n
    log_snr = -np.asarray(sched.gamma(t))
    assert np.all(np.isfinite(log_snr))
    assert np.all(np.diff(log_snr) < 0), f"SNR of {name} is not strictly decreasing"


def test_gamma_jit_and_integer_times():
    sched = polynomial_schedule()
    t = jnp.array([0.0, 0.25, 1.0])
    np.testing.assert_array_equal(np.asarray(jax.jit(sched.gamma)(t)), np.asarray(sched.gamma(t)))
    assert float(sched.gamma(1)) == pytest.approx(float(sched.gamma(1.0)))
    assert sched.num_steps == 1000
    assert isinstance(sched, Schedule)


def test_get_schedule_names():
    t = jnp.linspace(0, 1, 9)
    pairs = [
        (get_schedule("polynomial_2"), polynomial_schedule()),
        (get_schedule("polynomial_3", num_steps=100), polynomial_schedule(100, power=3)),
        (get_schedule("polynomial", power=2), polynomial_schedule()),
        (get_schedule("cosine"), cosine_schedule()),
        (get_schedule("linear", gamma_min=-10.0), linear_schedule(gamma_min=-10.0)),
    ]
    for a, b in pairs:
        np.testing.assert_array_equal(np.asarray(a.gamma(t)), np.asarray(b.gamma(t)))


@pytest.mark.parametrize("name", ["sigmoid", "polynomial_x", "Cosine", ""])
def test_get_schedule_unknown_name(name):
    with pytest.raises(ValueError, match="Unknown noise schedule"):
        get_schedule(name)


@pytest.mark.allow_nonfinite
def test_factories_reject_bad_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        polynomial_schedule(num_steps=0)
    with pytest.raises(ValueError, match="precision"):
        polynomial_schedule(precision=0.0)
    with pytest.raises(ValueError, match="gamma_max"):
        linear_schedule(gamma_min=1.0, gamma_max=0.0)
    with pytest.raises(ValueError, match="1-D table"):
        discrete_schedule(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        discrete_schedule([0.0, np.inf])
    with pytest.raises(ValueError, match="already sets the power"):
        get_schedule("polynomial_2", power=3)
