"""Variance-preserving noise schedules as pure functions `t -> gamma(t) = -log SNR(t)`.

A schedule fixes the forward process `q(z_t | z_0) = N(alpha_t z_0, sigma_t^2 I)` for
continuous time `t` in [0, 1] (Kingma et al., 2021, "Variational Diffusion Models",
section 3; SymDiff paper 002, section 2.2). It is represented by `gamma(t)`, the negative
log signal-to-noise ratio; everything else follows in closed form:

    alpha_t^2 = sigmoid(-gamma(t)),   sigma_t^2 = sigmoid(gamma(t)),
    SNR(t) = alpha_t^2 / sigma_t^2 = exp(-gamma(t)),   alpha_t^2 + sigma_t^2 = 1.

Discrete schedules (`polynomial_schedule`, `cosine_schedule`) are tables of `T + 1`
values of gamma on the grid `t = i / T`; they are looked up at `round(t * T)` exactly as
the EDM code does (Hoogeboom et al., 2022, `PredefinedNoiseSchedule.forward`). The
rounding is half-to-even (`jnp.round`, like `torch.round`), and indices are clipped to
`[0, T]`. A table lookup is piecewise constant in `t`, so its derivative is zero: use a
continuous schedule (`linear_schedule`) where `d gamma / dt` is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.validation import is_concrete, poison

__all__ = [
    "Schedule",
    "clip_noise_schedule",
    "cosine_schedule",
    "discrete_schedule",
    "get_schedule",
    "linear_schedule",
    "polynomial_alphas2",
    "polynomial_schedule",
]


def check_time(t) -> None:
    """Raises when a concrete time `t` is NaN or Inf; nothing under jit."""
    if not is_concrete(t):
        return
    a = np.asarray(t, dtype=np.float64)
    bad = a[~np.isfinite(a)]
    if bad.size:
        raise ValueError(
            f"t must be a finite diffusion time in [0, 1]; got {bad.reshape(-1)[0]!r}."
        )


def _as_time(t) -> jax.Array:
    """Turns `t` into a floating array (integers become the default float dtype).

    Raises ValueError for concrete NaN/Inf times; under jit an Inf time becomes NaN.
    """
    check_time(t)
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return poison(t, jnp.isfinite(t))


class Schedule(NamedTuple):
    """A variance-preserving noise schedule.

    Attributes:
      gamma: pure function `t [...] -> gamma(t) [...]`, the negative log-SNR, for
        continuous `t` in [0, 1]; increasing in `t`. The output has the dtype of `t`
        (integer `t` is promoted to the default float dtype).
      name: a label for logs and configs.
      num_steps: `T` for a schedule defined on the grid `t = i / T` (looked up at
        `round(t * T)`); None for a schedule defined for every `t`. Samplers refuse to
        take more steps than `T`, since two times would then share one grid value.

    The schedule is a plain Python object, not a pytree: close over it (or pass it as a
    static argument) when jitting a function that takes it.
    """

    gamma: Callable[[jax.Array], jax.Array]
    name: str = "custom"
    num_steps: int | None = None

    def alpha(self, t) -> jax.Array:
        """`alpha_t = sqrt(sigmoid(-gamma(t)))`, the signal scale (VDM eq. 3)."""
        return jnp.sqrt(jax.nn.sigmoid(-self.gamma(_as_time(t))))

    def sigma(self, t) -> jax.Array:
        """`sigma_t = sqrt(sigmoid(gamma(t)))`, the noise scale (VDM eq. 3)."""
        return jnp.sqrt(jax.nn.sigmoid(self.gamma(_as_time(t))))

    def snr(self, t) -> jax.Array:
        """`SNR(t) = alpha_t^2 / sigma_t^2 = exp(-gamma(t))`."""
        return jnp.exp(-self.gamma(_as_time(t)))

    def alpha_sigma(self, t) -> tuple[jax.Array, jax.Array]:
        """`(alpha_t, sigma_t)` from one evaluation of gamma."""
        g = self.gamma(_as_time(t))
        return jnp.sqrt(jax.nn.sigmoid(-g)), jnp.sqrt(jax.nn.sigmoid(g))


def discrete_schedule(gammas, name: str = "discrete") -> Schedule:
    """A schedule from a table of `T + 1` gamma values on the grid `t = i / T`.

    `gamma(t) = gammas[clip(round(t * T), 0, T)]` with half-to-even rounding, which is
    how EDM (`PredefinedNoiseSchedule.forward`) turns continuous time into a table index.

    Args:
      gammas: array-like `[T + 1]`, the negative log-SNR at `t = 0, 1/T, ..., 1`;
        should be increasing. Kept in float64 and cast to the dtype of `t` on lookup.
      name: a label.

    Returns:
      A `Schedule` with `num_steps = T`. Its `gamma(t)` raises for concrete NaN/Inf `t`;
      under jit a NaN `t` gives NaN; times outside [0, 1] are clipped to the grid.
    """
    table = np.asarray(gammas, dtype=np.float64)
    if table.ndim != 1 or table.shape[0] < 2:
        raise ValueError(
            f"gammas must be a 1-D table of T + 1 >= 2 values (one per grid time i / T); "
            f"got shape {table.shape}."
        )
    if not np.all(np.isfinite(table)):
        raise ValueError(
            f"gammas must be finite; the table {name!r} has {np.sum(~np.isfinite(table))} "
            "non-finite entries (alpha^2 or sigma^2 hit 0 or 1: add precision)."
        )
    num_steps = table.shape[0] - 1

    def gamma(t):
        t = _as_time(t)
        index = jnp.clip(jnp.round(t * num_steps), 0, num_steps).astype(jnp.int32)
        return poison(jnp.asarray(table, dtype=t.dtype)[index], ~jnp.isnan(t))

    return Schedule(gamma=gamma, name=name, num_steps=num_steps)


def clip_noise_schedule(alphas2: np.ndarray, clip_value: float = 0.001) -> np.ndarray:
    """Clips the step ratios `alpha_t^2 / alpha_{t-1}^2` to `[clip_value, 1]`.

    EDM's `clip_noise_schedule` (Hoogeboom et al., 2022): prepend `alpha^2 = 1`, form the
    ratios of consecutive values, clip them, and take the cumulative product again. This
    keeps every reverse step's `alpha_{t|t-1}` away from zero.

    Args:
      alphas2: `[T + 1]` values of `alpha^2` on the grid.
      clip_value: the smallest allowed ratio.

    Returns:
      `[T + 1]` clipped values, float64.
    """
    a = np.concatenate([np.ones(1), np.asarray(alphas2, dtype=np.float64)])
    ratios = np.clip(a[1:] / a[:-1], clip_value, 1.0)
    return np.cumprod(ratios)


def polynomial_alphas2(num_steps: int = 1000, precision: float = 1e-5, power: float = 2.0):
    """`alpha^2` on the grid `t = i / T` for EDM's polynomial schedule, float64 `[T + 1]`.

    EDM (Hoogeboom et al., 2022, `polynomial_schedule`): `alpha^2 = (1 - (i / T)^power)^2`,
    then `clip_noise_schedule` with clip value 0.001, then the precision rescaling
    `alpha^2 <- (1 - 2 precision) alpha^2 + precision`, so that
    `alpha^2` lies in `[precision, 1 - precision]` and gamma stays finite.
    """
    steps = num_steps + 1
    # EDM's grid: linspace(0, steps, steps) / steps, i.e. i / T for i = 0..T.
    x = np.linspace(0, steps, steps) / steps
    alphas2 = (1.0 - np.power(x, power)) ** 2
    alphas2 = clip_noise_schedule(alphas2, clip_value=0.001)
    return (1.0 - 2.0 * precision) * alphas2 + precision


def _gamma_from_alphas2(alphas2: np.ndarray) -> np.ndarray:
    """`gamma = -(log alpha^2 - log sigma^2)` with `sigma^2 = 1 - alpha^2` (EDM)."""
    return -(np.log(alphas2) - np.log1p(-alphas2))


def polynomial_schedule(
    num_steps: int = 1000, precision: float = 1e-5, power: float = 2.0
) -> Schedule:
    """EDM's `polynomial_<power>` schedule (`polynomial_2` with the defaults).

    Construction (Hoogeboom et al., 2022, code `equivariant_diffusion/en_diffusion.py`):
    `alpha^2(i/T) = (1 - (i/T)^power)^2` on `T + 1` grid points; step ratios clipped to
    `[0.001, 1]` and re-accumulated (`clip_noise_schedule`); rescaled to
    `(1 - 2 precision) alpha^2 + precision`; `gamma = -(log alpha^2 - log sigma^2)`.
    Lookup at `round(t * T)` (see `discrete_schedule`). With T = 1000 and
    precision 1e-5, `gamma(0) = -log((1 - 1e-5) / 1e-5) = -11.513` and
    `gamma(1) = +11.513`.

    Args:
      num_steps: T, the number of grid intervals.
      precision: the floor `s` of `alpha^2` and `sigma^2`; EDM's QM9 default is 1e-5.
      power: the polynomial power (2 gives `polynomial_2`).

    Returns:
      A discrete `Schedule` with `num_steps = T`.
    """
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}.")
    if not 0.0 < precision < 0.5:
        raise ValueError(f"precision must lie in (0, 0.5); got {precision!r}.")
    alphas2 = polynomial_alphas2(int(num_steps), precision, power)
    return discrete_schedule(_gamma_from_alphas2(alphas2), name=f"polynomial_{power:g}")


def cosine_schedule(
    num_steps: int = 1000, s: float = 0.008, raise_to_power: float = 1.0
) -> Schedule:
    """The cosine schedule of Nichol & Dhariwal (2021, eq. 17), as EDM builds it.

    EDM's `cosine_beta_schedule`: on `T + 2` points `u_j = j / (T + 1)`,
    `f(u) = cos^2(((u + s) / (1 + s)) pi / 2)`, normalised by `f(0)`; betas
    `1 - f(u_{j+1}) / f(u_j)` clipped to `[0, 0.999]`; `alpha^2` is the cumulative
    product of `1 - beta` (`T + 1` values), optionally raised to `raise_to_power`.
    Then `gamma = -(log alpha^2 - log sigma^2)`, looked up at `round(t * T)`. EDM adds
    no precision floor here: `alpha^2(0) = 1 - beta_0 < 1` keeps gamma finite.

    Args:
      num_steps: T.
      s: the small offset of Nichol & Dhariwal (0.008).
      raise_to_power: exponent applied to `alpha^2` (1 leaves it unchanged).

    Returns:
      A discrete `Schedule` with `num_steps = T`.
    """
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}.")
    steps = int(num_steps) + 2
    u = np.linspace(0, steps, steps) / steps
    f = np.cos(((u + s) / (1 + s)) * np.pi * 0.5) ** 2
    f = f / f[0]
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    alphas2 = np.cumprod(1.0 - betas)
    if raise_to_power != 1:
        alphas2 = np.power(alphas2, raise_to_power)
    return discrete_schedule(_gamma_from_alphas2(alphas2), name="cosine")


def linear_schedule(gamma_min: float = -13.3, gamma_max: float = 5.0) -> Schedule:
    """VDM's fixed schedule, linear in gamma: `gamma(t) = gamma_min + (gamma_max - gamma_min) t`.

    Kingma et al. (2021), section 3 and appendix (the defaults -13.3 and 5.0 are theirs).
    Defined for every `t`, and differentiable in `t`.
    """
    if not (np.isfinite(gamma_min) and np.isfinite(gamma_max)):
        raise ValueError(
            f"gamma_min and gamma_max must be finite; got gamma_min={gamma_min}, "
            f"gamma_max={gamma_max}."
        )
    if not gamma_max > gamma_min:
        raise ValueError(
            f"gamma_max must exceed gamma_min (SNR must decrease in t); "
            f"got gamma_min={gamma_min}, gamma_max={gamma_max}."
        )

    def gamma(t):
        t = _as_time(t)
        return gamma_min + (gamma_max - gamma_min) * t

    return Schedule(gamma=gamma, name="linear", num_steps=None)


def linear_sigma_schedule(sigma_min: float = 0.01, sigma_max: float = 0.999) -> Schedule:
    """Linear in sigma: `sigma_t = sigma_min + (sigma_max - sigma_min) t`, `alpha_t = sqrt(1 - sigma_t^2)`.

    The schedule of the public reference's toy experiments (paper 000; `1D-toy/main.py` of
    vinhsuhi/Orbit-Diffusion uses `sigmas = linspace(0.01, 0.999, T)`), here in
    continuous time: `gamma(t) = log sigma_t^2 - log(1 - sigma_t^2)`.
    """
    if not 0.0 < sigma_min < sigma_max < 1.0:
        raise ValueError(
            f"Need 0 < sigma_min < sigma_max < 1; got sigma_min={sigma_min}, sigma_max={sigma_max}."
        )

    def gamma(t):
        t = _as_time(t)
        s = sigma_min + (sigma_max - sigma_min) * t
        return 2.0 * jnp.log(s) - jnp.log1p(-(s**2))

    return Schedule(gamma=gamma, name="linear_sigma", num_steps=None)


def get_schedule(name: str, **kwargs) -> Schedule:
    """A schedule by name: "polynomial_<power>" (e.g. "polynomial_2"), "polynomial",
    "cosine", "linear" or "linear_sigma"; keyword arguments go to the factory.

    Example: `get_schedule("polynomial_2", num_steps=1000, precision=1e-5)`.
    """
    if name == "cosine":
        return cosine_schedule(**kwargs)
    if name == "linear":
        return linear_schedule(**kwargs)
    if name == "linear_sigma":
        return linear_sigma_schedule(**kwargs)
    if name == "polynomial":
        return polynomial_schedule(**kwargs)
    if name.startswith("polynomial_"):
        try:
            power = float(name.split("_", 1)[1])
        except ValueError:
            power = None
        if power is not None:
            if "power" in kwargs:
                raise ValueError(
                    f"The schedule name {name!r} already sets the power; do not pass power="
                    f"{kwargs['power']!r} as well."
                )
            return polynomial_schedule(power=power, **kwargs)
    raise ValueError(
        f"Unknown noise schedule {name!r}. Known: 'polynomial_<power>' (e.g. 'polynomial_2'), "
        "'polynomial', 'cosine', 'linear', 'linear_sigma'."
    )
