"""Samplers: exact oracles, Gaussian data, ODE convergence orders, masks, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.diffusion import (
    ancestral_mean_std,
    ancestral_step,
    ddim_step,
    discretise_features,
    euler_step,
    heun_step,
    linear_schedule,
    polynomial_schedule,
    posterior,
    prior_sample,
    project,
    sample_ancestral,
    sample_ddim,
    sample_ode,
    sample_x_given_z0,
    x0_from_eps,
)

N, D, REAL = 6, 3, 4
MASK1 = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _point_oracle(c, schedule, kind):
    """The exact denoiser for data = the single point c, as a prediction of `kind`."""

    def model_fn(key, z, t):
        del key
        alpha, sigma = schedule.alpha_sigma(t)
        a, s = alpha[:, None, None], sigma[:, None, None]
        x0 = jnp.broadcast_to(c, z.shape)
        eps = (z - a * x0) / s
        return {"x0": x0, "eps": eps, "v": a * eps - s * x0}[kind]

    return model_fn


# --------------------------------------------------------------------------- DDIM


@pytest.mark.parametrize("kind", ["x0", "eps", "v"])
def test_ddim_with_exact_oracle_lands_on_the_data_point(key, kind, x64):
    """Data = {c}: x0_hat = c at every step, so z_s - alpha_s c = (sigma_s / sigma_t)(z_t -
    alpha_t c), and the last x0 prediction is c itself."""
    schedule = polynomial_schedule()
    mask = jnp.broadcast_to(MASK1, (5, N))
    k1, k2 = jax.random.split(key)
    c = project(jax.random.normal(k1, (N, D)), MASK1)
    z_T = prior_sample(k2, (5, N, D), mask, dtype=jnp.float64)
    model = _point_oracle(c, schedule, kind)
    z_0 = sample_ddim(key, model, z_T, schedule, 50, mask=mask, prediction=kind)
    a0, s0 = float(schedule.alpha(0.0)), float(schedule.sigma(0.0))
    a1, s1 = float(schedule.alpha(1.0)), float(schedule.sigma(1.0))
    expected = a0 * c + (s0 / s1) * (z_T - a1 * c)
    np.testing.assert_allclose(np.asarray(z_0), np.asarray(expected * mask[..., None]), atol=1e-9)
    assert np.max(np.abs(np.asarray(z_0 - c * mask[..., None]))) < 0.05
    x_hat = sample_ddim(
        key, model, z_T, schedule, 50, mask=mask, prediction=kind, final_prediction=True
    )
    np.testing.assert_allclose(
        np.asarray(x_hat), np.asarray(jnp.broadcast_to(c, x_hat.shape)), atol=1e-9
    )
    assert np.all(np.asarray(x_hat[:, REAL:]) == 0.0)


def test_ddim_step_formula(x64):
    rng = np.random.default_rng(0)
    z, x0 = rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 3, 2))
    out = ddim_step(jnp.asarray(z), jnp.asarray(x0), 0.8, 0.6, 0.6, 0.8)
    np.testing.assert_allclose(np.asarray(out), 0.8 * x0 + 0.6 * (z - 0.6 * x0) / 0.8, atol=1e-12)


# --------------------------------------------------------------------------- ancestral


def _gaussian_eps_oracle(m, s, schedule):
    """E[eps | z_t] for data N(m, s^2): sigma_t (z - alpha_t m) / (alpha_t^2 s^2 + sigma_t^2)."""

    def model_fn(key, z, t):
        del key
        alpha, sigma = schedule.alpha_sigma(t)
        a, sg = alpha[:, None, None], sigma[:, None, None]
        return sg * (z - a * m) / (a**2 * s**2 + sg**2)

    return model_fn


def _ancestral_moments_reference(m, s, n, gamma_min=-13.3, gamma_max=5.0):
    """Exact mean and variance of the discretised ancestral chain (numpy float64).

    With the exact eps oracle every step is affine-Gaussian, z_s = A z_t + b + std xi,
    with A, b, std from paper 002 eq. (13) written out with a_{t|s} = a_t / a_s and
    s_{t|s}^2 = s_t^2 - a_{t|s}^2 s_s^2; the moments propagate from z_T ~ N(0, 1).
    """

    def coefficients(t):
        g = gamma_min + (gamma_max - gamma_min) * t
        return np.sqrt(_sigmoid(-g)), np.sqrt(_sigmoid(g))

    mean, var = 0.0, 1.0
    for i in range(n, 0, -1):
        a_t, s_t = coefficients(i / n)
        a_s, s_s = coefficients((i - 1) / n)
        a_ts = a_t / a_s
        s2_ts = s_t**2 - a_ts**2 * s_s**2
        k = s_t / (a_t**2 * s**2 + s_t**2)
        c = s2_ts / (a_ts * s_t)
        A, b = 1.0 / a_ts - c * k, c * k * a_t * m
        mean, var = A * mean + b, A**2 * var + s2_ts * s_s**2 / s_t**2
    return mean, var


@pytest.mark.parametrize("num_steps", [50, 500])
def test_ancestral_sampler_reproduces_gaussian_data(key, num_steps):
    """Data N(m, s^2) in 1D, exact eps oracle, 20000 samples (com_free=False).

    The sample mean and variance must match the exact law of the discretised chain within
    5 standard errors each (false-alarm rate ~1.2e-6 per run). With 500 steps the chain's
    law is also within 0.01 of N(m, s^2) (the residual bias: prior mismatch and
    discretisation), so the samples reproduce the data moments; with 50 steps the
    per-step coefficients differ most between correct and wrong kernels.
    """
    m, s, batch = 1.5, 0.5, 20000
    schedule = linear_schedule()
    z_T = prior_sample(key, (batch, 1, 1), com_free=False)
    model = _gaussian_eps_oracle(m, s, schedule)
    z_0 = sample_ancestral(
        jax.random.fold_in(key, 1), model, z_T, schedule, num_steps, com_free=False
    )
    samples = np.asarray(z_0, np.float64).ravel()
    ref_mean, ref_var = _ancestral_moments_reference(m, s, num_steps)
    se_mean = np.sqrt(ref_var / batch)
    se_var = ref_var * np.sqrt(2.0 / (batch - 1))
    assert abs(samples.mean() - ref_mean) < 5 * se_mean, (samples.mean(), ref_mean)
    assert abs(samples.var(ddof=1) - ref_var) < 5 * se_var, (samples.var(ddof=1), ref_var)
    if num_steps >= 500:
        # Against the data distribution itself, allowing for the chain's computed bias.
        assert abs(ref_mean - m) < 0.01 and abs(ref_var - s**2) < 0.01
        assert abs(samples.mean() - m) < 5 * se_mean + abs(ref_mean - m)
        assert abs(samples.var(ddof=1) - s**2) < 5 * se_var + abs(ref_var - s**2)


def test_ancestral_mean_is_the_posterior_at_the_predicted_x0(x64):
    """Eq. (13) equals q(z_s | z_t, x0_hat) with x0_hat = (z_t - sigma_t eps_hat) / alpha_t."""
    rng = np.random.default_rng(3)
    z_t, eps_hat = rng.normal(size=(3, 5, 3)), rng.normal(size=(3, 5, 3))
    g_s, g_t = np.array([-11.0, -1.0, 4.0]), np.array([-10.9, 2.0, 11.0])
    a_s, s_s = np.sqrt(_sigmoid(-g_s)), np.sqrt(_sigmoid(g_s))
    a_t, s_t = np.sqrt(_sigmoid(-g_t)), np.sqrt(_sigmoid(g_t))
    mean, std = ancestral_mean_std(jnp.asarray(z_t), jnp.asarray(eps_hat), g_s, g_t)
    x0_hat = x0_from_eps(jnp.asarray(z_t), jnp.asarray(eps_hat), a_t, s_t)
    ref_mean, ref_std = posterior(jnp.asarray(z_t), x0_hat, a_s, s_s, a_t, s_t)
    np.testing.assert_allclose(np.asarray(mean), np.asarray(ref_mean), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(np.asarray(std), np.asarray(ref_std), rtol=1e-7)


def test_ancestral_masks_com_and_trajectory(key):
    """Padded rows stay exactly zero even when the model writes garbage there; real rows
    stay CoM-free; the trajectory has num_steps + 1 states."""
    schedule = polynomial_schedule()
    mask = jnp.broadcast_to(MASK1, (3, N))

    def model(k, z, t):
        return jax.random.normal(k, z.shape) + 5.0  # not CoM-free, nonzero padding

    z_T = prior_sample(key, (3, N, D), mask)
    z_0, traj = sample_ancestral(key, model, z_T, schedule, 20, mask=mask, return_trajectory=True)
    assert traj.shape == (21, 3, N, D)
    np.testing.assert_array_equal(np.asarray(traj[0]), np.asarray(z_T))
    np.testing.assert_array_equal(np.asarray(traj[-1]), np.asarray(z_0))
    assert np.all(np.asarray(traj[:, :, REAL:]) == 0.0)
    np.testing.assert_allclose(np.asarray(traj[:, :, :REAL].sum(2)), 0.0, atol=1e-4)


def _standard_normal_eps_oracle(schedule):
    """E[eps | z_t] = sigma_t z_t for data N(0, I): keeps every state of order one."""

    def model_fn(key, z, t):
        del key
        return schedule.sigma(t)[:, None, None] * z

    return model_fn


def test_ancestral_position_dims_keeps_features_uncentred(key):
    schedule = polynomial_schedule()
    mask = jnp.broadcast_to(MASK1, (2, N))
    z_T = prior_sample(key, (2, N, D + 2), mask, position_dims=D)
    np.testing.assert_allclose(np.asarray(z_T[:, :REAL, :D].sum(1)), 0.0, atol=1e-5)
    assert np.min(np.abs(np.asarray(z_T[:, :REAL, D:].sum(1)))) > 1e-3
    z_0 = sample_ancestral(
        key, _standard_normal_eps_oracle(schedule), z_T, schedule, 10, mask=mask, position_dims=D
    )
    np.testing.assert_allclose(np.asarray(z_0[:, :REAL, :D].sum(1)), 0.0, atol=1e-5)
    assert np.min(np.abs(np.asarray(z_0[:, :REAL, D:].sum(1)))) > 1e-3
    assert np.all(np.asarray(z_0[:, REAL:]) == 0.0)


def test_ancestral_step_noise_is_fresh_every_step(key):
    """Recover each step's standard noise xi_i = (z_s - mean) / std; the xi must have unit
    variance and consecutive ones must be uncorrelated. 4000 samples: |corr| < 5 / sqrt(4000)
    fails by chance with probability ~6e-7 per pair (45 pairs)."""
    batch, n = 4000, 10
    schedule = polynomial_schedule()
    model = _standard_normal_eps_oracle(schedule)
    z_T = prior_sample(key, (batch, 1, 1), com_free=False)
    _, traj = sample_ancestral(key, model, z_T, schedule, n, com_free=False, return_trajectory=True)
    xi = []
    for j, i in enumerate(range(n, 0, -1)):
        t = jnp.full((batch,), i / n)
        eps_hat = model(None, traj[j], t)
        mean, std = ancestral_mean_std(
            traj[j], eps_hat, schedule.gamma((i - 1) / n), schedule.gamma(i / n)
        )
        xi.append(np.asarray((traj[j + 1] - mean) / std, np.float64).ravel())
    xi = np.array(xi)
    np.testing.assert_allclose(xi.std(1), 1.0, atol=0.1)
    corr = np.corrcoef(xi)[np.triu_indices(n, 1)]
    assert np.max(np.abs(corr)) < 5 / np.sqrt(batch), np.max(np.abs(corr))


def test_ancestral_step_directly(key):
    schedule = polynomial_schedule()
    z = prior_sample(key, (2, N, D), jnp.broadcast_to(MASK1, (2, N)))
    out = ancestral_step(
        key, z, jnp.zeros_like(z), 0.4, 0.5, schedule, jnp.broadcast_to(MASK1, (2, N))
    )
    assert out.shape == z.shape and np.all(np.asarray(out[:, REAL:]) == 0.0)
    np.testing.assert_array_equal(
        np.asarray(out),
        np.asarray(
            ancestral_step(
                key, z, jnp.zeros_like(z), 0.4, 0.5, schedule, jnp.broadcast_to(MASK1, (2, N))
            )
        ),
    )


# --------------------------------------------------------------------------- final step


def test_sample_x_given_z0(key):
    """Mean = the x0 prediction at t = 0; std = sigma_0 / alpha_0 = exp(gamma_0 / 2)."""
    schedule = linear_schedule(gamma_min=-4.0)
    c = jnp.zeros((1, 1))
    model = _point_oracle(c, schedule, "eps")
    z_0 = jnp.full((20000, 1, 1), 0.3)
    mean = sample_x_given_z0(key, model, z_0, schedule, com_free=False, add_noise=False)
    np.testing.assert_allclose(np.asarray(mean), 0.0, atol=1e-5)
    draws = np.asarray(sample_x_given_z0(key, model, z_0, schedule, com_free=False)).ravel()
    target = np.exp(-2.0)
    # 20000 draws: 5 standard errors of the standard deviation (~0.5% each).
    assert abs(draws.std() - target) < 5 * target / np.sqrt(2 * 20000)


def test_discretise_features():
    h = jnp.array([[[0.1, 0.2, -0.1, 0.61], [0.3, 0.0, 0.1, 0.08], [0.9, 0.0, 0.0, 0.5]]])
    one_hot, charges = discretise_features(h, 3, mask=jnp.array([[1, 1, 0]]))
    np.testing.assert_array_equal(np.asarray(one_hot), [[[0, 1, 0], [1, 0, 0], [0, 0, 0]]])
    np.testing.assert_array_equal(np.asarray(charges), [[6, 1, 0]])
    with pytest.raises(ValueError, match="columns"):
        discretise_features(h, 4)


# --------------------------------------------------------------------------- ODE


def _linear_ode_errors(method, ns, t0=0.0, t1=1.0):
    """dx/dt = (1 + t) x; exact x(t1) = x(t0) exp((t1 - t0) + (t1^2 - t0^2) / 2)."""

    def velocity(key, x, t):
        return (1.0 + t)[:, None] * x

    x_init = jnp.array([[1.0], [-2.0]], jnp.float64)
    exact = np.asarray(x_init) * np.exp((t1 - t0) + (t1**2 - t0**2) / 2)
    errors = []
    for n in ns:
        out = sample_ode(jax.random.key(0), velocity, x_init, n, method=method, t0=t0, t1=t1)
        errors.append(np.max(np.abs(np.asarray(out) - exact)))
    return np.array(errors)


@pytest.mark.parametrize("method,order", [("euler", 1.0), ("heun", 2.0)])
@pytest.mark.parametrize("direction", [(0.0, 1.0), (1.0, 0.0)])
def test_ode_convergence_order(method, order, direction, x64):
    ns = [20, 40, 80, 160]
    errors = _linear_ode_errors(method, ns, *direction)
    observed = np.log2(errors[:-1] / errors[1:])
    np.testing.assert_allclose(observed, order, atol=0.1)


def test_euler_and_heun_steps():
    x = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(np.asarray(euler_step(x, jnp.array([3.0, -1.0]), 0.5)), [2.5, 1.5])
    # v(x, t) = t is integrated exactly by the trapezoidal rule: x + (t1^2 - t0^2) / 2.
    out = heun_step(x, 0.2, 0.3, lambda x_, t_: jnp.full_like(x_, t_))
    np.testing.assert_allclose(np.asarray(out), np.asarray(x) + (0.5**2 - 0.2**2) / 2, rtol=1e-6)


def test_ode_mask_and_trajectory(key):
    mask = jnp.broadcast_to(MASK1, (2, N))
    x = prior_sample(key, (2, N, D), mask)
    out, traj = sample_ode(
        key,
        lambda k, x_, t: jnp.ones_like(x_),
        x,
        8,
        method="heun",
        mask=mask,
        com_free=True,
        return_trajectory=True,
    )
    assert traj.shape == (9, 2, N, D)
    assert np.all(np.asarray(traj[:, :, REAL:]) == 0.0)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x), atol=1e-5)  # ones are pure CoM


# --------------------------------------------------------------------------- jit, errors


def test_samplers_jit_and_match_eager(key):
    schedule = polynomial_schedule()
    mask = jnp.broadcast_to(MASK1, (2, N))
    z_T = prior_sample(key, (2, N, D), mask)
    model = _point_oracle(
        project(jnp.ones((N, D)) * jnp.arange(N)[:, None], MASK1), schedule, "eps"
    )

    def anc(k, z):
        return sample_ancestral(k, model, z, schedule, 10, mask=mask)

    def ddim(k, z):
        return sample_ddim(k, model, z, schedule, 10, mask=mask, prediction="eps")

    def ode(k, z):
        return sample_ode(k, lambda k_, x, t: -x, z, 10, method="heun", mask=mask)

    for fn in (anc, ddim, ode):
        jitted = jax.jit(lambda k, z, fn=fn: fn(k, z))
        np.testing.assert_allclose(
            np.asarray(jitted(key, z_T)), np.asarray(fn(key, z_T)), atol=1e-5
        )
    step = jax.jit(ancestral_step, static_argnames=("schedule", "com_free"))
    out = step(key, z_T, z_T, 0.1, 0.2, schedule=schedule)
    assert out.shape == z_T.shape
    assert jax.jit(schedule.gamma)(0.5).shape == ()


def test_sampler_argument_errors(key):
    schedule = polynomial_schedule(num_steps=100)
    z = jnp.zeros((2, N, D))
    model = lambda k, z_, t: z_  # noqa: E731
    with pytest.raises(ValueError, match="exceeds"):
        sample_ancestral(key, model, z, schedule, 101)
    with pytest.raises(ValueError, match="positive integer"):
        sample_ddim(key, model, z, schedule, 0)
    with pytest.raises(ValueError, match="Unknown prediction"):
        sample_ddim(key, model, z, schedule, 10, prediction="score")
    with pytest.raises(ValueError, match="batch"):
        sample_ancestral(key, model, jnp.zeros((N, D)), schedule, 10)
    with pytest.raises(ValueError, match="mask"):
        sample_ancestral(key, model, z, schedule, 10, mask=jnp.ones((2, N + 1)))
    with pytest.raises(ValueError, match="ODE method"):
        sample_ode(key, model, z, 10, method="rk4")
