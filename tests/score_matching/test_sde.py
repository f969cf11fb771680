"""VP / VE SDEs: the marginal moments solve the SDE's moment equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.score_matching import ve_sde, vp_sde


@pytest.mark.parametrize("build", [vp_sde, ve_sde])
def test_marginals_solve_moment_odes(build, x64):
    # For dx = -b(t) x dt + g(t) dw (drift linear, f = -b x): dm/dt = -b m and
    # d(s^2)/dt = -2 b s^2 + g^2, with m(0) = 1, s(0) = 0.
    sde = build()
    x = jnp.ones((2, 1))
    ts = jnp.linspace(0.05, 0.95, 7)
    for t in ts:
        b = -sde.drift(x, t)[0, 0]
        dm = jax.grad(sde.mean_coefficient)(t)
        dvar = jax.grad(lambda u: sde.std(u) ** 2)(t)
        np.testing.assert_allclose(dm, -b * sde.mean_coefficient(t), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(
            dvar, -2 * b * sde.std(t) ** 2 + sde.diffusion(t) ** 2, rtol=1e-8
        )
    np.testing.assert_allclose(sde.std(0.0), 0.0, atol=1e-12)
    np.testing.assert_allclose(sde.mean_coefficient(0.0), 1.0)


def test_vp_prior_matches():
    sde = vp_sde()
    assert abs(float(sde.std(1.0)) - sde.prior_std) < 1e-3
    assert float(sde.mean_coefficient(1.0)) < 1e-2
