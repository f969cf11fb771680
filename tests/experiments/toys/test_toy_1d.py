"""Tests of the 1D reflection toy (paper 000, section 4.1): pieces against independent
float64 numpy references, Theorem 1 on the measured gradient variance, and an end-to-end
smoke run of `run`."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.toy_1d import get_config
from experiments.toys.toy_1d import evaluate, model, train


@pytest.fixture(scope="module")
def denoiser():
    _, init, apply = model.build_model(get_config("smoke"))
    return init, apply


def _ideal_denoiser(x, alpha, sigma):
    """Posterior mean of x0 under 1/2 delta_-1 + 1/2 delta_+1: tanh(alpha x / sigma^2)."""
    return np.tanh(alpha * x / sigma**2)


def test_reference_grid():
    """sigma linear from 0.01 to 0.999 over 100 indices, alpha^2 + sigma^2 = 1, time i / 100."""
    g = model.make_grid("linear_sigma", 100, 0.01, 0.999)
    np.testing.assert_allclose(np.asarray(g.sigmas), np.linspace(0.01, 0.999, 100), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g.alphas) ** 2 + np.asarray(g.sigmas) ** 2, 1, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g.times), np.arange(100) / 100, atol=1e-7)
    np.testing.assert_array_equal(evaluate.sampling_indices(100, 100), np.arange(99, -1, -1))
    idx = evaluate.sampling_indices(100, 10)
    assert idx[0] == 99 and idx[-1] == 0 and np.all(np.diff(idx) < 0)


def test_other_schedules_are_valid():
    g = model.make_grid("polynomial_2", 100)
    a, s = np.asarray(g.alphas), np.asarray(g.sigmas)
    np.testing.assert_allclose(a**2 + s**2, 1, atol=1e-5)
    assert np.all(np.diff(s) >= 0) and s[-1] > 0.99


def test_ddim_matches_numpy_reference_loop():
    """ddim_sample equals an independent float64 loop of the reference sampler."""
    grid = model.make_grid()
    a, s, tt = (np.asarray(v, np.float64) for v in grid)

    def apply(params, x, t):  # any odd denoiser, here a smooth non-ideal one
        return jnp.tanh(1.5 * x) * (1.0 - 0.3 * t)

    z0 = np.linspace(-2.0, 2.0, 41)[:, None]
    got = np.asarray(
        evaluate.ddim_sample(apply, None, jnp.asarray(z0, jnp.float32), grid, np.arange(99, -1, -1))
    )
    x = z0.copy()
    for i in range(99, -1, -1):
        den = np.tanh(1.5 * x) * (1.0 - 0.3 * tt[i])
        if i > 0:
            eps = (x - a[i] * den) / s[i]
            x = a[i - 1] * den + s[i - 1] * eps
    np.testing.assert_allclose(got, den, rtol=1e-4, atol=1e-5)


def test_ideal_denoiser_gives_near_perfect_samples():
    """With the exact posterior mean, samples land on the orbit: both metrics are tiny."""
    grid = model.make_grid()

    def apply(params, x, t):
        i = jnp.round(t * 100).astype(jnp.int32)
        return jnp.tanh(grid.alphas[i] * x / grid.sigmas[i] ** 2)

    z = evaluate.balanced_starts(jax.random.key(0), 10_000)
    x = evaluate.ddim_sample(apply, None, z, grid, evaluate.sampling_indices(100, 100))[:, 0]
    from symdiff_jax.metrics.toy_1d import mean_abs_to_nearest, w2_to_reflection_orbit

    assert float(mean_abs_to_nearest(x)) < 1e-5
    assert float(w2_to_reflection_orbit(x)) < 1e-5
    assert int(jnp.sum(x > 0)) == 5000  # the balanced starts keep the two halves


def test_balanced_starts():
    z = np.asarray(evaluate.balanced_starts(jax.random.key(1), 1001))
    assert z.shape == (1001, 1)
    assert np.all(z[:500] >= 0) and np.all(z[500:] <= 0)


def test_exact_target_is_tanh():
    """The Z2 symmetrised target for data {+1} is tanh(alpha x_t / sigma^2) (closed form)."""
    x = jnp.linspace(-1.5, 1.5, 31)[:, None]
    alpha = jnp.linspace(0.1, 0.99, 31)
    sigma = jnp.sqrt(1 - alpha**2)
    got = model.reflection_target("symmetrised", None, x, jnp.ones_like(x), alpha, sigma, 4)
    ref = _ideal_denoiser(np.asarray(x[:, 0], np.float64), np.asarray(alpha), np.asarray(sigma))
    np.testing.assert_allclose(np.asarray(got[:, 0]), ref, rtol=1e-5, atol=1e-6)
    assert (
        model.reflection_target("baseline", None, x, jnp.ones_like(x), alpha, sigma, 4) is not None
    )


def test_mc_target_limits(key):
    """Algorithm 1 with K = 1 returns an orbit point; with many samples it nears the exact."""
    x = jnp.linspace(-1.0, 1.0, 9)[:, None]
    alpha, sigma = jnp.full((9,), 0.6), jnp.full((9,), 0.8)
    one = model.reflection_target("symmetrised_mc", key, x, jnp.ones_like(x), alpha, sigma, 1)
    np.testing.assert_allclose(np.abs(np.asarray(one)), 1.0, atol=1e-6)
    many = model.reflection_target("symmetrised_mc", key, x, jnp.ones_like(x), alpha, sigma, 256)
    exact = _ideal_denoiser(np.asarray(x[:, 0]), 0.6, 0.8)
    # K = 256: P(no -1 or no +1 drawn) = 2^-255, weights then within ~0.1 of the exact.
    np.testing.assert_allclose(np.asarray(many[:, 0]), exact, atol=0.15)


def test_unknown_method_and_bad_chunks(denoiser):
    init, apply = denoiser
    with pytest.raises(ValueError, match="Unknown toy_1d method"):
        model.reflection_target("augment", None, jnp.ones((2, 1)), jnp.ones((2, 1)), 1.0, 1.0, 1)
    c = get_config("smoke")
    c.num_train_steps = 150
    with pytest.raises(ValueError, match="multiple of eval_every"):
        train.make_train_fn(c, "baseline", apply, model.make_grid())
    with pytest.raises(ValueError, match="num_sampling_steps"):
        evaluate.sampling_indices(100, 101)


def _grad_var(apply, params, index, num_draws, seed=0):
    return np.asarray(
        evaluate.gradient_variance(
            apply, params, jax.random.key(seed), model.make_grid(), index, num_draws, model.METHODS
        )
    )


@pytest.mark.parametrize("index", [30, 50, 70, 90])
def test_theorem1_variance_reduction(denoiser, index):
    """Paper 000, Theorem 1: for the odd (equivariant) D, the data-target gradient has the
    larger variance (checked where the gap exceeds the noise). Exact law of total variance (x0 | x_t is +-1 with mean phi = tanh):
    Var(g_data) = Var(g_sym) + E[4 w^2 (1 - phi^2) ||grad D||^2]; checked to 10%. With
    8192 draws the Monte Carlo error of each side is ~2-4%: false-alarm rate < 1e-3."""
    init, apply = denoiser
    params = init(jax.random.key(3))
    var = _grad_var(apply, params, index, 8192)
    b, s = model.METHODS.index("baseline"), model.METHODS.index("symmetrised")
    if index >= 50:  # at t = 0.3 the gap (posterior variance ~ 1 - tanh(10)^2) is below noise
        assert var[b] > var[s]

    grid = model.make_grid()
    a, sg, t = grid.alphas[index], grid.sigmas[index], grid.times[index]
    w = a**2 / sg**2
    eps = jax.random.normal(jax.random.split(jax.random.key(0))[0], (8192, 1))
    x_t = a + sg * eps

    def d(p, x):
        return apply(p, x[None], t)[0, 0]

    grads = jax.vmap(jax.grad(d), in_axes=(None, 0))(params, x_t)
    sq = sum(jnp.sum(g.reshape(8192, -1) ** 2, axis=1) for g in jax.tree.leaves(grads))
    phi = jnp.tanh(a * x_t[:, 0] / sg**2)
    extra = float(jnp.mean(4 * w**2 * (1 - phi**2) * sq))
    np.testing.assert_allclose(var[b], var[s] + extra, rtol=0.1)


def test_config_variants():
    with open(
        os.path.join(os.path.dirname(train.__file__), "..", "..", "..", "configs", "toy_1d.py")
    ) as f:
        first = f.readline()
    assert first.startswith("# COMMAND: python -m experiments.train --config configs/toy_1d.py")
    c = get_config()
    assert c.experiment == "toy_1d" and c.batch_size == 100 and c.num_train_steps == 100_000
    assert c.num_samples == 100_000 and c.num_sampling_steps == 100 and c.num_seeds >= 10
    assert tuple(c.hidden_sizes) == (10, 5) and c.learning_rate == 1e-3
    with pytest.raises(ValueError, match="Unknown toy_1d config variant"):
        get_config("huge")


def test_smoke_run(tmp_path):
    """configs/toy_1d.py:smoke runs end to end and returns every metric key, finite."""
    config = get_config("smoke")
    metrics = train.run(config, str(tmp_path))
    expected = []
    for m in config.methods:
        for name in ("rmsd", "w2"):
            expected += [f"{name}/{m}"] + [f"{name}/{m}_{s}" for s in ("mean", "std", "q25", "q75")]
            expected.append(f"{name}_final/{m}")
    for t in config.grad_var_times:
        expected.append(f"grad_var_ratio/t_{t:g}")
        expected += [f"grad_var/{m}/t_{t:g}" for m in model.METHODS]
    missing = sorted(set(expected) - set(metrics))
    assert not missing, missing
    assert isinstance(metrics.pop("params"), int)
    for k, v in metrics.items():
        assert isinstance(v, float) and math.isfinite(v), (k, v)
    with open(tmp_path / "per_seed.json") as f:
        per_seed = json.load(f)
    assert len(per_seed["baseline"]["rmsd"]) == config.num_seeds
    for name in ("loss_curves", "val_error", "histograms", "per_seed_metrics", "grad_variance"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
