"""Symmetrised-target and data-target losses in x0, eps and v form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.targets import data_target_loss, symmetrised_target_loss, target_in_form


def _batch(seed=0, b=3, n=5, d=3):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(b, n, d))
    eps = rng.normal(size=(b, n, d))
    alpha = np.array([0.9, 0.6, 0.2])[:b]
    sigma = np.sqrt(1 - alpha**2)
    x_t = alpha[:, None, None] * x0 + sigma[:, None, None] * eps
    phi = rng.normal(size=(b, n, d))
    mask = np.ones((b, n))
    mask[1, 3:] = 0.0
    return x0, eps, x_t, alpha, sigma, phi, mask


@pytest.mark.usefixtures("x64")
def test_x0_form_is_masked_sum_of_squares():
    x0, eps, x_t, alpha, sigma, phi, mask = _batch()
    pred = x0 + 0.1
    w = np.array([1.0, 2.0, 0.5])
    got = np.asarray(symmetrised_target_loss(pred, phi, mask=mask, weight=w))
    ref = w * (((pred - phi) ** 2).sum(-1) * mask).sum(-1)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert got.shape == (3,)
    np.testing.assert_allclose(np.asarray(symmetrised_target_loss(phi, phi, mask=mask)), 0.0)


@pytest.mark.usefixtures("x64")
def test_forms_are_rescalings_of_the_x0_loss():
    """For a prediction converted between forms: L_eps = (alpha/sigma)^2 L_x0 and
    L_v = L_x0 / sigma^2 (alpha^2 + sigma^2 = 1)."""
    x0, eps, x_t, alpha, sigma, phi, mask = _batch(1)
    a, s = alpha[:, None, None], sigma[:, None, None]
    pred_x0 = x0 + 0.3 * np.random.default_rng(2).normal(size=x0.shape)
    pred_eps = (x_t - a * pred_x0) / s
    pred_v = a * pred_eps - s * pred_x0
    kw = dict(x_t=x_t, alpha=alpha, sigma=sigma, mask=mask)
    l_x0 = np.asarray(symmetrised_target_loss(pred_x0, phi, **kw))
    l_eps = np.asarray(symmetrised_target_loss(pred_eps, phi, form="eps", **kw))
    l_v = np.asarray(symmetrised_target_loss(pred_v, phi, form="v", **kw))
    np.testing.assert_allclose(l_eps, (alpha / sigma) ** 2 * l_x0, rtol=1e-10)
    np.testing.assert_allclose(l_v, l_x0 / sigma**2, rtol=1e-10)
    # the targets themselves, written out
    eps_g = (x_t - a * phi) / s
    np.testing.assert_allclose(np.asarray(target_in_form(phi, x_t, alpha, sigma, "eps")), eps_g)
    np.testing.assert_allclose(
        np.asarray(target_in_form(phi, x_t, alpha, sigma, "v")), a * eps_g - s * phi
    )


@pytest.mark.usefixtures("x64")
def test_data_target_loss_uses_the_true_noise():
    """With phi_G replaced by x0 the eps-form target is the noise that made x_t."""
    x0, eps, x_t, alpha, sigma, phi, mask = _batch(3)
    kw = dict(x_t=x_t, alpha=alpha, sigma=sigma)
    np.testing.assert_allclose(
        np.asarray(data_target_loss(eps, x0, form="eps", **kw)), 0.0, atol=1e-20
    )
    v = alpha[:, None, None] * eps - sigma[:, None, None] * x0
    np.testing.assert_allclose(np.asarray(data_target_loss(v, x0, form="v", **kw)), 0.0, atol=1e-20)
    np.testing.assert_allclose(np.asarray(data_target_loss(x0, x0)), 0.0)


def test_gradient_flows_to_prediction_only():
    x0, eps, x_t, alpha, sigma, phi, mask = (jnp.float32(a) for a in _batch(4))
    g_pred, g_phi = jax.grad(
        lambda p, t: symmetrised_target_loss(p, t, mask=mask).sum(), argnums=(0, 1)
    )(x0, phi)
    np.testing.assert_allclose(
        np.asarray(g_pred), np.asarray(2 * (x0 - phi) * mask[..., None]), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(g_phi), 0.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(form="score"), "Unknown loss form 'score'"),
        (dict(form="eps"), "needs x_t, alpha and sigma"),
        (dict(mask=np.ones((3, 4))), "mask must have shape"),
        (dict(pred=np.zeros((3, 5, 2))), "pred must have the shape"),
        (dict(weight=np.ones((3, 5))), "weight w"),
    ],
)
def test_clear_errors(kwargs, match):
    args = dict(pred=np.zeros((3, 5, 3)), phi_g=np.zeros((3, 5, 3)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        symmetrised_target_loss(args.pop("pred"), args.pop("phi_g"), **args)
