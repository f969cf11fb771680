"""SymDiff's learned-gamma denoiser in the composition of the official code or of the paper.

Paper 002 (Algorithm 1, line 4; eq. 7) draws the rotation as

    R = R0 qr(f(R0^T . x, eta)),                                   ("paper")

which is O(3)-equivariant in distribution for any `f`. The official implementation
(`DiT_DitGaussian_dynamics.gamma`, in row-vector form `bmm(gamma_backbone(x R0), R0^T)`)
computes

    R = qr(f(R0^T . x, eta)) R0^T,                                 ("official")

which is not: `R(g . x)` and `g R(x)` differ in law unless `qr(f)` commutes with the
group. Its `eta` is a plain masked normal times `noise_std` (not projected to zero
mean), and with `fix_qr` the decoder's matrix `A` enters as `qr(A^T)^T`. This module
reproduces either composition so that official checkpoints sample as they were trained.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.groups import com_free_normal, qr_to_orthogonal, remove_com, rotate, sample_group
from symdiff_jax.models import DiT, GammaNet

Array = jax.Array

COMPOSITIONS = ("official", "paper")
ETAS = ("masked", "com_free")


def orthogonal_from_raw(raw: Array, fix_qr: bool) -> Array:
    """The official map of the decoder's `A [..., 3, 3]` to O(3).

    `fix_qr=True`: `qr(A^T)^T` (the official `fix_qr` option, its default); otherwise
    `qr(A)`. Both use the sign-fixed QR (positive diagonal of the triangular factor).
    """
    if fix_qr:
        return jnp.swapaxes(qr_to_orthogonal(jnp.swapaxes(raw, -1, -2)), -1, -2)
    return qr_to_orthogonal(raw)


def compose_rotation(r0: Array, q: Array, composition: str) -> Array:
    """`R = q R0^T` ("official") or `R = R0 q` ("paper", paper 002 eq. 7)."""
    if composition == "official":
        return jnp.matmul(q, jnp.swapaxes(r0, -1, -2))
    if composition == "paper":
        return jnp.matmul(r0, q)
    raise ValueError(f"composition must be one of {COMPOSITIONS}; got {composition!r}.")


class LearnedGammaDenoiser(nnx.Module):
    """`eps_hat = R . eps_theta(R^T . z_t, t)` with `R` drawn as the official code or the paper does.

    Args:
      eps_net: the DiT `eps_theta`.
      gamma_net: the trunk `f_theta` (its output `A` is mapped by `orthogonal_from_raw`).
      composition: "official" (`qr(f(R0^T x)) R0^T`) or "paper" (`R0 qr(f(R0^T x))`).
      eta: "masked" (official: `noise_std * N(0, I)` on real atoms) or "com_free"
        (`noise_std * N_U(0, I)`).
      noise_std: scale of `eta` (official `noise_std`, 1).
      fix_qr: the official `fix_qr` flag (True in the published runs).
      group: "O3" or "SO3" for the Haar `R0`.
    """

    def __init__(
        self,
        eps_net: DiT,
        gamma_net: GammaNet,
        *,
        composition: str = "official",
        eta: str = "masked",
        noise_std: float = 1.0,
        fix_qr: bool = True,
        group: str = "O3",
    ):
        if composition not in COMPOSITIONS:
            raise ValueError(f"composition must be one of {COMPOSITIONS}; got {composition!r}.")
        if eta not in ETAS:
            raise ValueError(f"eta must be one of {ETAS}; got {eta!r}.")
        self.eps_net = eps_net
        self.gamma_net = gamma_net
        self.composition = composition
        self.eta = eta
        self.noise_std = float(noise_std)
        self.fix_qr = bool(fix_qr)
        self.group = group

    def rotation_given(self, r0: Array, eta: Array, x: Array, t: Array, mask: Array) -> Array:
        """`R [B, 3, 3]` for a given Haar draw `r0 [B, 3, 3]` and noise `eta [B, N, m]`."""
        x = remove_com(x * mask[..., None].astype(x.dtype), mask)
        q = orthogonal_from_raw(self.gamma_net(jnp.matmul(x, r0), eta, t, mask), self.fix_qr)
        return compose_rotation(r0, q, self.composition)

    def draw_noise(self, key: Array, x: Array, mask: Array) -> tuple[Array, Array]:
        """`(r0, eta)`: a Haar `R0` per system and the trunk's noise `eta`."""
        k_r0, k_eta = jax.random.split(key)
        r0 = sample_group(k_r0, self.group, x.shape[:1], x.dtype)
        shape = x.shape[:-1] + (self.gamma_net.noise_dims,)
        if self.eta == "masked":
            eta = jax.random.normal(k_eta, shape, x.dtype) * mask[..., None].astype(x.dtype)
        else:
            eta = com_free_normal(k_eta, shape, mask, x.dtype)
        return r0, self.noise_std * eta

    def rotation(self, key: Array, x: Array, h: Array, t: Array, mask: Array) -> Array:
        """A draw `R ~ gamma(. | x)`, `[B, 3, 3]` (the one `__call__` uses for `key`)."""
        del h
        r0, eta = self.draw_noise(key, x, mask)
        return self.rotation_given(r0, eta, x, t, mask)

    def apply_rotation(self, r: Array, x: Array, h: Array, t: Array, mask: Array):
        """`(R . eps_x(R^T . x), eps_h(R^T . x))` for a given `R [B, 3, 3]`."""
        x = remove_com(x * mask[..., None].astype(x.dtype), mask)
        eps_x, eps_h = self.eps_net(rotate(x, jnp.swapaxes(r, -1, -2)), h, t, mask)
        return rotate(eps_x, r), eps_h

    def __call__(self, key: Array, x: Array, h: Array, t: Array, mask: Array):
        return self.apply_rotation(self.rotation(key, x, h, t, mask), x, h, t, mask)
