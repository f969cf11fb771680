"""Samplers: ancestral (DDPM), DDIM and ODE (Euler / Heun), as pure jit-able functions.

Every single step is a pure function; full samplers loop with `jax.lax.scan`, fold the key
with the step index (`fold_in(key, i)`) so a step's randomness does not depend on the
number of steps taken before it, and keep padded rows exactly zero.

Time grid of the diffusion samplers: `t_i = i / num_steps`, stepping from `t = 1` down to
`t = 0` (`i = num_steps, ..., 1`, each step from `t_i` to `s = t_{i-1}`). A model is called
as `model_fn(key, z, t)` with `z [B, ...]` the whole batch and `t [B]` the current time
(continuous, in [0, 1]); it returns a prediction of kind "eps", "x0" or "v"
(see `parametrisation`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from symdiff_jax.diffusion.forward import project, sample_noise, transition_from_gammas
from symdiff_jax.diffusion.parametrisation import PREDICTIONS, expand_to, to_eps, to_x0
from symdiff_jax.diffusion.schedules import Schedule
from symdiff_jax.validation import check_mask, check_points

__all__ = [
    "ancestral_mean_std",
    "ancestral_step",
    "ddim_step",
    "discretise_features",
    "euler_step",
    "heun_step",
    "prior_sample",
    "sample_ancestral",
    "sample_ddim",
    "sample_ode",
    "sample_x_given_z0",
]

ModelFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


# --------------------------------------------------------------------------- single steps


def ancestral_mean_std(
    z_t: jax.Array, eps_hat: jax.Array, gamma_s, gamma_t
) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation of the reverse kernel `p(z_s | z_t)`, eps-form.

    SymDiff paper 002, eq. (13) (Ho et al., 2020; Kingma et al., 2021), for any `s < t`:

        mu    = z_t / alpha_{t|s} - sigma_{t|s}^2 / (alpha_{t|s} sigma_t) eps_hat,
        sigma = sigma_{t|s} sigma_s / sigma_t,

    i.e. the posterior `q(z_s | z_t, x0)` at `x0 = (z_t - sigma_t eps_hat) / alpha_t`.
    `alpha_{t|s}`, `sigma_{t|s}^2` come from `transition_from_gammas` (EDM's expm1 form).

    Args:
      z_t: `[..., N, d]`.
      eps_hat: the predicted noise, same shape.
      gamma_s, gamma_t: scalars or per-example arrays indexing the leading axes of `z_t`.

    Returns:
      `(mean [..., N, d], std)` with `std` broadcastable onto `mean`.
    """
    g_s, g_t = expand_to(gamma_s, z_t), expand_to(gamma_t, z_t)
    alpha_ts, sigma2_ts = transition_from_gammas(g_s, g_t)
    sigma_s = jnp.sqrt(jax.nn.sigmoid(g_s))
    sigma_t = jnp.sqrt(jax.nn.sigmoid(g_t))
    mean = z_t / alpha_ts - (sigma2_ts / alpha_ts / sigma_t) * eps_hat
    std = jnp.sqrt(sigma2_ts) * sigma_s / sigma_t
    return mean, std


def ancestral_step(
    key: jax.Array,
    z_t: jax.Array,
    eps_hat: jax.Array,
    s,
    t,
    schedule: Schedule,
    mask: jax.Array | None = None,
    com_free: bool = True,
    position_dims: int | None = None,
) -> jax.Array:
    """One DDPM ancestral step `z_s ~ p(z_s | z_t) = N_U(mu, sigma^2 I)` (paper 002, eq. 13).

    The noise is `N_U(0, I)` on the position columns when `com_free` (plain normal on the
    rest), and the result is projected onto U again, as EDM does against drift of the
    centre of mass. Padded rows are zero.

    Args:
      key: PRNG key for the step's noise.
      z_t: current state `[..., N, d]`.
      eps_hat: the model's noise prediction at `(z_t, t)`, same shape.
      s, t: times with `s < t`, scalars or per-example arrays `[...]`.
      schedule: the noise schedule.
      mask: optional `[..., N]`.
      com_free: CoM-free noise and projection on the position columns.
      position_dims: how many leading columns are positions (None: all).

    Returns:
      `z_s [..., N, d]`.
    """
    mean, std = ancestral_mean_std(z_t, eps_hat, schedule.gamma(s), schedule.gamma(t))
    eps = sample_noise(key, z_t.shape, mask, com_free, position_dims, z_t.dtype)
    return project(mean + std * eps, mask, com_free, position_dims)


def ddim_step(z_t: jax.Array, x0_hat: jax.Array, alpha_s, sigma_s, alpha_t, sigma_t) -> jax.Array:
    """One deterministic DDIM step (eta = 0) from `t` to `s`.

    Song et al. (2021), "Denoising Diffusion Implicit Models", eq. (12) with
    `sigma_t(eta) = 0`: `z_s = alpha_s x0_hat + sigma_s eps_hat`, where
    `eps_hat = (z_t - alpha_t x0_hat) / sigma_t` is the noise implied by `x0_hat`.

    Args:
      z_t: `[..., N, d]`.
      x0_hat: the model's clean-data prediction, same shape.
      alpha_s, sigma_s, alpha_t, sigma_t: scalars or per-example arrays indexing the
        leading axes of `z_t`.

    Returns:
      `z_s [..., N, d]`.
    """
    a_s, s_s = expand_to(alpha_s, z_t), expand_to(sigma_s, z_t)
    a_t, s_t = expand_to(alpha_t, z_t), expand_to(sigma_t, z_t)
    eps_hat = (z_t - a_t * x0_hat) / s_t
    return a_s * x0_hat + s_s * eps_hat


def euler_step(x: jax.Array, v: jax.Array, dt) -> jax.Array:
    """One explicit Euler step of `dx/dt = v`: `x + dt v` (paper 002, eq. 28)."""
    return x + dt * v


def heun_step(
    x: jax.Array, t, dt, velocity_fn: Callable[[jax.Array, jax.Array], jax.Array]
) -> jax.Array:
    """One Heun step (explicit trapezoidal rule, second order) of `dx/dt = v(x, t)`.

    `x' = x + dt v(x, t)`, then `x + dt / 2 (v(x, t) + v(x', t + dt))`
    (Karras et al., 2022, Algorithm 1 without the final-step special case).

    Args:
      x: state at time `t`.
      t: current time (scalar or array accepted by `velocity_fn`).
      dt: the step (may be negative to integrate backwards in time).
      velocity_fn: `(x, t) -> dx/dt`.

    Returns:
      The state at `t + dt`.
    """
    v0 = velocity_fn(x, t)
    x_pred = x + dt * v0
    v1 = velocity_fn(x_pred, t + dt)
    return x + 0.5 * dt * (v0 + v1)


# --------------------------------------------------------------------------- full samplers


def _check_num_steps(num_steps, schedule: Schedule | None = None) -> int:
    if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}.")
    num_steps = int(num_steps)
    if schedule is not None and schedule.num_steps is not None and num_steps > schedule.num_steps:
        raise ValueError(
            f"num_steps={num_steps} exceeds the {schedule.num_steps} grid intervals of the "
            f"discrete schedule {schedule.name!r}: two sampler times would share one noise "
            "level. Take at most that many steps or build the schedule with more."
        )
    return num_steps


def _check_batch(z: jax.Array, mask: jax.Array | None, name: str) -> None:
    check_points(z, name)
    check_mask(z, mask, name)
    if z.ndim < 3:
        raise ValueError(
            f"{name} must be a batch of shape [B, N, d] (the model sees t of shape [B]); "
            f"got shape {z.shape}. Add a leading batch axis."
        )


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"Unknown prediction kind {prediction!r}; expected one of {PREDICTIONS}.")


def _check_sampler_inputs(
    z_T: jax.Array, mask: jax.Array | None, prediction: str, num_steps, schedule: Schedule
) -> int:
    """The checks of a grid sampler's arguments; returns `num_steps` as an int."""
    _check_batch(z_T, mask, "z_T")
    _check_prediction(prediction)
    return _check_num_steps(num_steps, schedule)


def _step_times(i: jax.Array, batch: int, n: int, dtype) -> tuple[jax.Array, jax.Array]:
    """`(s, t) = ((i - 1) / n, i / n)`, each `[batch]`: the times of reverse step `i`."""
    t = jnp.full((batch,), i, dtype) / n
    s = jnp.full((batch,), i - 1, dtype) / n
    return s, t


# A draw `z_T ~ N_U(0, I)` from the prior (paper 002, sections 2.2-2.3): the state-space
# noise of `forward.sample_noise` (CoM-free position columns when `com_free`, padded rows
# zero).
prior_sample = sample_noise


def _scan(body, z0, xs, return_trajectory: bool):
    def step(z, x):
        z_new = body(z, x)
        return z_new, (z_new if return_trajectory else None)

    z_final, traj = jax.lax.scan(step, z0, xs)
    if return_trajectory:
        traj = jnp.concatenate([z0[None], traj], axis=0)
        return z_final, traj
    return z_final


def _reverse_scan(body, z_T: jax.Array, mask, n: int, return_trajectory: bool):
    """`body(z, i)` for the reverse steps `i = n, ..., 1` from `z_T` (padded rows zeroed)."""
    z_T = project(z_T, mask, com_free=False)
    return _scan(body, z_T, jnp.arange(n, 0, -1), return_trajectory)


def sample_ancestral(
    key: jax.Array,
    model_fn: ModelFn,
    z_T: jax.Array,
    schedule: Schedule,
    num_steps: int,
    mask: jax.Array | None = None,
    com_free: bool = True,
    prediction: str = "eps",
    position_dims: int | None = None,
    return_trajectory: bool = False,
):
    """Ancestral (DDPM) sampling from `t = 1` to `t = 0` with `num_steps` steps.

    At step `i = num_steps, ..., 1`: `t = i / num_steps`, `s = (i - 1) / num_steps`,
    `pred = model_fn(k_model, z, t * ones(B))`, converted to `eps_hat`, then
    `z <- ancestral_step(k_noise, z, eps_hat, s, t, ...)`, where
    `(k_model, k_noise) = split(fold_in(key, i))`. The final `p(x, h | z_0)` step is
    `sample_x_given_z0` (not applied here).

    Args:
      key: PRNG key.
      model_fn: `(key, z [B, N, d], t [B]) -> prediction [B, N, d]`.
      z_T: the starting batch `[B, N, d]`, e.g. from `prior_sample`.
      schedule: the noise schedule.
      num_steps: number of reverse steps (at most `schedule.num_steps` for a discrete one).
      mask: optional `[B, N]`.
      com_free: CoM-free noise and projection on the position columns.
      prediction: what `model_fn` returns: "eps", "x0" or "v".
      position_dims: how many leading columns are positions (None: all).
      return_trajectory: also return every state, `[num_steps + 1, B, N, d]` from `z_T`.

    Returns:
      `z_0 [B, N, d]`, or `(z_0, trajectory)`.
    """
    n = _check_sampler_inputs(z_T, mask, prediction, num_steps, schedule)
    batch, dtype = z_T.shape[0], z_T.dtype

    def body(z, i):
        s, t = _step_times(i, batch, n, dtype)
        k_model, k_noise = jax.random.split(jax.random.fold_in(key, i))
        pred = model_fn(k_model, z, t)
        alpha_t, sigma_t = schedule.alpha_sigma(t)
        eps_hat = to_eps(pred, prediction, z, alpha_t, sigma_t)
        return ancestral_step(k_noise, z, eps_hat, s, t, schedule, mask, com_free, position_dims)

    return _reverse_scan(body, z_T, mask, n, return_trajectory)


def sample_ddim(
    key: jax.Array,
    model_fn: ModelFn,
    z_T: jax.Array,
    schedule: Schedule,
    num_steps: int,
    mask: jax.Array | None = None,
    prediction: str = "x0",
    com_free: bool = False,
    position_dims: int | None = None,
    final_prediction: bool = False,
    return_trajectory: bool = False,
):
    """Deterministic DDIM sampling (eta = 0) from `t = 1` to `t = 0` with `num_steps` steps.

    At step `i = num_steps, ..., 1`: `t = i / num_steps`, `s = (i - 1) / num_steps`,
    `x0_hat` from `model_fn(fold_in(key, i), z, t * ones(B))`, then `ddim_step`. The key
    only feeds a stochastic model (e.g. a symmetrised one); the update itself is
    deterministic.

    Args:
      key: PRNG key passed to the model.
      model_fn: `(key, z [B, N, d], t [B]) -> prediction [B, N, d]`.
      z_T: the starting batch `[B, N, d]`.
      schedule: the noise schedule.
      num_steps: number of steps (at most `schedule.num_steps` for a discrete one).
      mask: optional `[B, N]`; padded rows stay zero.
      prediction: what `model_fn` returns: "x0", "eps" or "v".
      com_free: project each state onto U (a no-op up to rounding when the model's
        predictions are CoM-free).
      position_dims: how many leading columns are positions (None: all).
      final_prediction: return the model's `x0_hat` from the last step (`t = 1 / n`)
        instead of `z` at `t = 0`. Since `sigma_0 > 0` for most schedules,
        `z_0 = alpha_0 x0_hat + sigma_0 eps_hat` carries a small residual of noise.
      return_trajectory: also return every state, `[num_steps + 1, B, N, d]` from `z_T`.

    Returns:
      `z_0 [B, N, d]` (or `x0_hat`, see `final_prediction`), or `(z_0, trajectory)`.
    """
    n = _check_sampler_inputs(z_T, mask, prediction, num_steps, schedule)
    batch, dtype = z_T.shape[0], z_T.dtype

    def body(z, i):
        s, t = _step_times(i, batch, n, dtype)
        pred = model_fn(jax.random.fold_in(key, i), z, t)
        alpha_t, sigma_t = schedule.alpha_sigma(t)
        alpha_s, sigma_s = schedule.alpha_sigma(s)
        x0_hat = to_x0(pred, prediction, z, alpha_t, sigma_t)
        z_s = ddim_step(z, x0_hat, alpha_s, sigma_s, alpha_t, sigma_t)
        if final_prediction:
            z_s = jnp.where(i == 1, x0_hat, z_s)
        return project(z_s, mask, com_free, position_dims)

    return _reverse_scan(body, z_T, mask, n, return_trajectory)


def sample_ode(
    key: jax.Array,
    velocity_fn: ModelFn,
    x_init: jax.Array,
    num_steps: int,
    method: str = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
    mask: jax.Array | None = None,
    com_free: bool = False,
    position_dims: int | None = None,
    return_trajectory: bool = False,
):
    """Integrates `dx/dt = v(x, t)` from `t0` to `t1` with fixed steps (Euler or Heun).

    Flow matching (paper 002, appendix E.2: prior at `t = 0`, data at `t = 1`, Euler
    kernel eq. 28) or a probability-flow ODE (pass `t0=1., t1=0.`). Step `i = 0..n-1`
    goes from `t0 + i dt` to `t0 + (i + 1) dt`, `dt = (t1 - t0) / n`, and calls
    `velocity_fn(fold_in(key, i), x, t * ones(B))`; Heun's two evaluations in one step
    share that key.

    Args:
      key: PRNG key passed to the velocity (e.g. for a symmetrised, stochastic one).
      velocity_fn: `(key, x [B, ...], t [B]) -> dx/dt [B, ...]`.
      x_init: starting batch `[B, ...]`.
      num_steps: number of steps n.
      method: "euler" (first order) or "heun" (second order).
      t0, t1: start and end times.
      mask: optional `[B, N]` for `x_init [B, N, d]`; padded rows stay zero.
      com_free: project each state's position columns onto U.
      position_dims: how many leading columns are positions (None: all).
      return_trajectory: also return every state, `[num_steps + 1, B, ...]`.

    Returns:
      `x(t1)`, or `(x(t1), trajectory)`.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"Unknown ODE method {method!r}; expected 'euler' or 'heun'.")
    n = _check_num_steps(num_steps)
    x_init = jnp.asarray(x_init)
    if x_init.ndim < 1:
        raise ValueError(f"x_init must have a leading batch axis; got shape {x_init.shape}.")
    if mask is not None or com_free:
        check_points(x_init, "x_init")
        check_mask(x_init, mask, "x_init")
    batch, dtype = x_init.shape[0], x_init.dtype
    dt = (t1 - t0) / n

    def body(x, i):
        k = jax.random.fold_in(key, i)
        t = t0 + i.astype(dtype) * dt

        def v(x_, t_):
            return velocity_fn(k, x_, jnp.full((batch,), t_, dtype))

        if method == "euler":
            x_new = euler_step(x, v(x, t), dt)
        else:
            x_new = heun_step(x, t, dt, v)
        if mask is not None or com_free:
            x_new = project(x_new, mask, com_free, position_dims)
        return x_new

    return _scan(body, x_init, jnp.arange(n), return_trajectory)


# --------------------------------------------------------------------------- final step


def sample_x_given_z0(
    key: jax.Array,
    model_fn: ModelFn,
    z_0: jax.Array,
    schedule: Schedule,
    mask: jax.Array | None = None,
    com_free: bool = True,
    prediction: str = "eps",
    position_dims: int | None = None,
    add_noise: bool = True,
) -> jax.Array:
    """The final step `x ~ p(x | z_0) = N_U(x_hat(z_0), (sigma_0 / alpha_0)^2 I)`.

    EDM (Hoogeboom et al., 2022, `sample_p_xh_given_z0`): the mean is the model's
    clean-data prediction at `t = 0`, the standard deviation
    `sigma_0 / alpha_0 = exp(gamma(0) / 2)`. EDM keeps only the position columns of this
    draw and decodes features from `z_0` itself (see `discretise_features`).

    Args:
      key: PRNG key (split into the model's key and the noise key).
      model_fn: `(key, z [B, N, d], t [B]) -> prediction`.
      z_0: `[B, N, d]`, the last state of `sample_ancestral`.
      schedule: the noise schedule.
      mask: optional `[B, N]`.
      com_free: CoM-free noise and projection on the position columns.
      prediction: what `model_fn` returns: "eps", "x0" or "v".
      position_dims: how many leading columns are positions (None: all).
      add_noise: False returns the mean.

    Returns:
      `[B, N, d]`.
    """
    _check_batch(z_0, mask, "z_0")
    _check_prediction(prediction)
    k_model, k_noise = jax.random.split(key)
    t = jnp.zeros((z_0.shape[0],), z_0.dtype)
    alpha_0, sigma_0 = schedule.alpha_sigma(t)
    x_hat = to_x0(model_fn(k_model, z_0, t), prediction, z_0, alpha_0, sigma_0)
    if add_noise:
        eps = sample_noise(k_noise, z_0.shape, mask, com_free, position_dims, z_0.dtype)
        x_hat = x_hat + expand_to(jnp.exp(0.5 * schedule.gamma(t)), z_0) * eps
    return project(x_hat, mask, com_free, position_dims)


def discretise_features(
    h: jax.Array,
    num_classes: int,
    mask: jax.Array | None = None,
    include_charges: bool = True,
    onehot_scale: float = 4.0,
    charge_scale: float = 10.0,
) -> tuple[jax.Array, jax.Array | None]:
    """Decodes sampled features into atom types and integer charges (EDM's final step).

    EDM (`sample_p_xh_given_z0` with `unnormalize`): the first `num_classes` columns are
    the scaled one-hot types (`one-hot / onehot_scale`), decoded by argmax; the next
    column, when `include_charges`, is the scaled charge (`charge / charge_scale`),
    multiplied back and rounded. Padded rows are zero.

    Args:
      h: `[..., N, num_classes + include_charges]` features of `z_0`.
      num_classes: number of atom types.
      mask: optional `[..., N]`.
      include_charges: whether a charge column follows the types.
      onehot_scale, charge_scale: the normalisation divisors (QM9: 4 and 10).

    Returns:
      `(one_hot int32 [..., N, num_classes], charges int32 [..., N] or None)`.
    """
    check_points(h, "h")
    check_mask(h, mask, "h")
    width = num_classes + int(include_charges)
    if h.shape[-1] != width:
        raise ValueError(
            f"h must have num_classes + include_charges = {width} columns; got shape {h.shape}."
        )
    m = jnp.ones(h.shape[:-1], jnp.int32) if mask is None else mask.astype(jnp.int32)
    types = jnp.argmax(h[..., :num_classes] * onehot_scale, axis=-1)
    one_hot = jax.nn.one_hot(types, num_classes, dtype=jnp.int32) * m[..., None]
    charges = None
    if include_charges:
        charges = jnp.round(h[..., num_classes] * charge_scale).astype(jnp.int32) * m
    return one_hot, charges
