"""Random-walk Metropolis on the centre-of-mass-free subspace, many chains in parallel.

The chains target `p(x) ∝ exp(-E(x))` (kT = 1) restricted to U = {sum_i x_i = 0}. The
proposal `x' = x + s proj_U(eps)`, `eps ~ N(0, I)`, is a symmetric Gaussian random walk on U,
so the Metropolis ratio is `exp(E(x) - E(x'))` (Metropolis et al. 1953; Hastings 1970).
The energies of `symdiff_jax.systems.energies` are translation-invariant, so the chain on U
samples the CoM-free marginal of the Boltzmann density.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.groups import com_free_normal, remove_com

Energy = Callable[[jax.Array], jax.Array]


class ChainState(NamedTuple):
    """Positions `x [C, N, d]` of C chains and their energies `energy [C]`."""

    x: jax.Array
    energy: jax.Array


def lattice_start(
    key: jax.Array, num_chains: int, num_particles: int, dim: int, spacing: float
) -> jax.Array:
    """Starting points `[C, N, d]`: N distinct random sites of a cubic lattice, CoM-free.

    The lattice has 3 sites per axis (3^d >= N for DW4 and LJ13) and the given spacing, so
    no two particles start closer than `spacing` (no Lennard-Jones overlap); each chain
    picks its own sites, so the chains start apart.
    """
    sites = np.stack(np.meshgrid(*[np.arange(3.0)] * dim, indexing="ij"), -1).reshape(-1, dim)
    if num_particles > sites.shape[0]:
        raise ValueError(
            f"lattice_start places at most {sites.shape[0]} particles in {dim} dimensions; "
            f"got num_particles={num_particles}."
        )
    sites = jnp.asarray(sites * spacing, jnp.result_type(float))
    keys = jax.random.split(key, num_chains)
    pick = jax.vmap(lambda k: jax.random.permutation(k, sites.shape[0])[:num_particles])(keys)
    return remove_com(sites[pick])


def metropolis_step(
    key: jax.Array, state: ChainState, energy: Energy, step_size: float
) -> tuple[ChainState, jax.Array]:
    """One random-walk Metropolis step on U for every chain.

    Proposal `x' = x + step_size proj_U(eps)`; accept with probability
    `min(1, exp(E(x) - E(x')))` (Metropolis et al. 1953).

    Args:
      key: PRNG key.
      state: current `ChainState` (x CoM-free).
      energy: `energy(x [C, N, d]) -> [C]`.
      step_size: proposal standard deviation per coordinate.

    Returns:
      `(new_state, accepted [C] bool)`.
    """
    key_move, key_accept = jax.random.split(key)
    proposal = state.x + step_size * com_free_normal(key_move, state.x.shape, dtype=state.x.dtype)
    new_energy = energy(proposal)
    log_ratio = state.energy - new_energy
    u = jax.random.uniform(key_accept, log_ratio.shape, log_ratio.dtype)
    accepted = jnp.log(u) < jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    x = jnp.where(accepted[:, None, None], proposal, state.x)
    return ChainState(x, jnp.where(accepted, new_energy, state.energy)), accepted


def run_chains(
    key: jax.Array,
    x: jax.Array,
    energy: Energy,
    step_size: float,
    num_samples: int,
    thin: int = 1,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Runs `num_samples * thin` Metropolis steps and keeps every `thin`-th state.

    Args:
      key: PRNG key.
      x: `[C, N, d]` starting points (projected to U here).
      energy: `energy(x [C, N, d]) -> [C]`.
      step_size: proposal standard deviation.
      num_samples: states kept per chain.
      thin: steps between kept states.

    Returns:
      `(samples [num_samples, C, N, d], energies [num_samples, C], acceptance rate [])`.
      Compile with `jax.jit(run_chains, static_argnums=(2, 4, 5))`.
    """
    x = remove_com(x)
    state = ChainState(x, energy(x))

    def one_step(carry, k):
        st, acc = carry
        st, accepted = metropolis_step(k, st, energy, step_size)
        return (st, acc + jnp.mean(accepted.astype(x.dtype))), None

    def keep(carry, k):
        carry, _ = jax.lax.scan(one_step, carry, jax.random.split(k, thin))
        return carry, (carry[0].x, carry[0].energy)

    keys = jax.random.split(key, num_samples)
    (_, acc), (samples, energies) = jax.lax.scan(keep, (state, jnp.zeros((), x.dtype)), keys)
    return samples, energies, acc / (num_samples * thin)


def integrated_autocorrelation_time(trace: np.ndarray, window_factor: float = 5.0) -> float:
    """Integrated autocorrelation time of a scalar trace `[T, C]` (C chains), in steps.

    `tau = 1 + 2 sum_{k=1}^{W} rho(k)` with the autocorrelation rho averaged over chains
    (FFT estimate, each chain centred on its own mean) and Sokal's automatic window: the
    smallest W with `W >= window_factor * tau(W)` (Sokal 1997, "Monte Carlo methods in
    statistical mechanics", section 3; the estimator of `emcee.autocorr`).
    """
    a = np.asarray(trace, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    num_steps = a.shape[0]
    a = a - a.mean(axis=0, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * num_steps)))
    spectrum = np.fft.rfft(a, n=size, axis=0)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[:num_steps].mean(axis=1)
    if acov[0] <= 0:
        return 1.0
    rho = acov / acov[0]
    taus = 2.0 * np.cumsum(rho) - 1.0
    window = np.arange(num_steps) >= window_factor * taus
    index = int(np.argmax(window)) if window.any() else num_steps - 1
    return float(taus[index])
