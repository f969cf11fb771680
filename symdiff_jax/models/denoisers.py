"""Noise predictors for molecules: `denoiser(key, x, h, t, mask) -> (eps_x, eps_h)`.

All share one call signature so the diffusion code (losses, VLB, samplers) does
not care which kind it holds:

- `DiTDenoiser`: SymDiff's `eps_theta` alone, S_N-equivariant but not
  O(3)-equivariant (the `dit` and `dit_aug` baselines of paper 002).
- `SymDiffDenoiser`: `eps_theta` symmetrised with a rotation kernel gamma (paper
  002, eq. 14), `eps_hat = R . eps_theta(R^T . z_t, t)`, `R ~ gamma(. | z_t)`;
  gamma is Haar (SymDiff-H) or Haar composed with a learned `f_theta` (SymDiff).
- `EGNNDenoiser`: EDM's E(3)-equivariant dynamics (Hoogeboom et al., 2022).

The key makes the stochastic ones stochastic; deterministic ones ignore it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.groups import remove_com
from symdiff_jax.models.dit import DiT
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.models.gamma_net import GammaNet
from symdiff_jax.symmetrise import as_kernel, haar_gamma, recursive_gamma, symmetrise

Array = jax.Array


class DiTDenoiser(nnx.Module):
    """A plain DiT noise predictor (no symmetrisation); the key is unused."""

    def __init__(self, eps_net: DiT):
        self.eps_net = eps_net

    def __call__(self, key: Array, x: Array, h: Array, t: Array, mask: Array):
        del key
        return self.eps_net(x, h, t, mask)


class SymDiffDenoiser(nnx.Module):
    """`eps_hat = R . eps_theta(R^T . z_t, t)` with `R ~ gamma(. | z_t)` (paper 002, eq. 14).

    Built with `symmetrise(kernel, gamma)` (paper 002, Theorem 1): an S_N-equivariant
    `eps_theta` becomes S_N x O(3)-equivariant in distribution. Only positions rotate;
    the feature noise `eps_h` is invariant.

    Args:
      eps_net: `eps_theta`, any callable module `eps_net(x, h, t, mask) -> (eps_x, eps_h)`
        with `x [B, N, 3]`, `h [B, N, F]`, `t [B]`, `mask [B, N]` (e.g. the `DiT`). If it
        has a `distance_embedding` that `gamma_net` shares, the distance features are
        computed once and passed to both as `distance_features=`.
      gamma_net: `f_theta` of the learned kernel (`R = R0 . qr(f_theta(R0^T z, eta, t))`),
        or None for gamma = Haar (SymDiff-H).
      group: "O3" or "SO3".
      noise_dims: width of `eta` (must match `gamma_net.noise_dims`).
    """

    def __init__(
        self,
        eps_net: nnx.Module,
        gamma_net: GammaNet | None = None,
        *,
        group: str = "O3",
        noise_dims: int = 3,
    ):
        if gamma_net is not None and gamma_net.noise_dims != noise_dims:
            raise ValueError(
                f"noise_dims={noise_dims} does not match gamma_net.noise_dims="
                f"{gamma_net.noise_dims}."
            )
        self.eps_net = eps_net
        self.gamma_net = gamma_net
        self.group = group
        self.noise_dims = noise_dims

    def gamma(self):
        """The rotation kernel `gamma(key, (x, h), t, mask=mask) -> R [B, 3, 3]`."""
        if self.gamma_net is None:
            return haar_gamma(self.group)
        gamma_net = self.gamma_net

        def f(state, eta, t, mask, distance_features=None):
            return gamma_net(state, eta, t, mask, distance_features=distance_features)

        return recursive_gamma(f, self.group, self.noise_dims)

    def shared_distance_features(self, x: Array, mask: Array) -> Array | None:
        """`Psi(x)` when `f_theta` exists and shares `eps_theta`'s distance embedding, else None.

        `Psi` depends on distances only, so it is the same for `R0^T z_t` (the input of
        `f_theta`) and `R^T z_t` (the input of `eps_theta`): one evaluation serves both
        (equal up to float rounding of the rotated distances). An `eps_net` without a
        `distance_embedding` shares nothing.
        """
        embedding = getattr(self.eps_net, "distance_embedding", None)
        gamma_net = self.gamma_net
        shared = (
            embedding is not None and getattr(gamma_net, "distance_embedding", None) is embedding
        )
        return embedding(x, mask) if shared else None

    def sample(
        self, key: Array, x: Array, h: Array, t: Array, mask: Array
    ) -> tuple[tuple[Array, Array], Array]:
        """`((eps_x, eps_h), R)`: the symmetrised prediction and the rotation `R ~ gamma(. | z_t)`
        it used (`symmetrise(..., return_group=True)`)."""
        eps_net = self.eps_net
        psi = self.shared_distance_features(x, mask)
        kw = {} if psi is None else {"distance_features": psi}

        def kernel(state, t, mask, **kw):
            return eps_net(state[0], state[1], t, mask, **kw)

        symmetrised = symmetrise(as_kernel(kernel), self.gamma(), return_group=True)
        return symmetrised(key, (x, h), t, mask=mask, **kw)

    def rotation(self, key: Array, x: Array, h: Array, t: Array, mask: Array) -> Array:
        """The draw `R ~ gamma(. | z_t)`, `[B, 3, 3]`, that `__call__` uses for `key`."""
        return self.sample(key, x, h, t, mask)[1]

    def __call__(self, key: Array, x: Array, h: Array, t: Array, mask: Array):
        return self.sample(key, x, h, t, mask)[0]


class EGNNDenoiser(nnx.Module):
    """EDM's dynamics: `eps_x = x_out - x` (CoM removed), `eps_h = h_out`; key unused.

    The EGNN sees `[h, t]`; its coordinate output minus its input, projected onto the
    CoM-free subspace, is the position noise (EDM, `EGNN_dynamics_QM9`).
    """

    def __init__(self, egnn: EGNN):
        self.egnn = egnn

    def __call__(self, key: Array, x: Array, h: Array, t: Array, mask: Array):
        del key
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype).reshape(-1), x.shape[:1])
        x_out, h_out = self.egnn(x, h, mask, t)
        m = mask.astype(x.dtype)[..., None]
        eps_x = remove_com((x_out - x) * m, mask)
        return eps_x, h_out * m
