"""Eq. 25 on Gaussian data: the loss's minimiser is the analytic score, both targets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.groups import com_free_normal
from symdiff_jax.score_matching import (
    conditional_score,
    perturb,
    score_matching_loss,
    ve_sde,
    vp_sde,
)
from symdiff_jax.symmetrise import haar_gamma

C = 1.7  # data std: x0 ~ N_U(0, C^2 I), an O(3)-invariant Gaussian


def fitted_slope(loss_at):
    """Minimiser of theta -> mean loss (a quadratic), from its values at -1, 0, 1."""
    lm, l0, lp = (float(jnp.mean(loss_at(th))) for th in (-1.0, 0.0, 1.0))
    return (lm - lp) / (2.0 * (lp + lm - 2.0 * l0))


@pytest.mark.parametrize("target", ["data", "symmetrised"])
@pytest.mark.parametrize("build, t_value", [(vp_sde, 0.1), (vp_sde, 0.5), (ve_sde, 0.5)])
def test_minimiser_is_the_gaussian_score(key, build, target, t_value):
    # p(x_t) = N_U(0, (m^2 C^2 + s^2) I), so the score is -x / (m^2 C^2 + s^2). The model
    # s_theta(x) = theta x is linear in theta: the loss is a quadratic whose minimiser is the
    # least-squares slope. 10,000 systems of 4 atoms in 3D: standard error <= 2% at these t.
    sde = build(sigma_max=5.0) if build is ve_sde else build()
    k_data, k_loss = jax.random.split(key)
    x0 = C * com_free_normal(k_data, (10000, 4, 3))
    t = jnp.full((10000,), t_value)
    m, s = sde.mean_coefficient(t_value), sde.std(t_value)
    expected = -1.0 / (m**2 * C**2 + s**2)

    def loss_at(theta):
        return score_matching_loss(
            k_loss, lambda x, tt: theta * x, x0, t, sde, gamma=haar_gamma("O3"), target=target
        )

    np.testing.assert_allclose(fitted_slope(loss_at), expected, rtol=0.05)


def test_conditional_score_is_gradient_of_log_density(key, x64):
    sde = vp_sde()
    x0 = com_free_normal(key, (4, 3))
    x_t = perturb(jax.random.fold_in(key, 1), x0, 0.4, sde)
    m, s = sde.mean_coefficient(0.4), sde.std(0.4)
    grad = jax.grad(lambda x: -jnp.sum((x - m * x0) ** 2) / (2 * s**2))(x_t)
    np.testing.assert_allclose(conditional_score(x_t, x0, 0.4, sde), grad, atol=1e-10)


def test_unknown_target(key):
    with pytest.raises(ValueError, match="symmetrised"):
        x0 = jnp.zeros((1, 4, 3))
        score_matching_loss(key, lambda x, t: x, x0, jnp.ones(1), vp_sde(), target="x0")
