"""The particle networks `net(x [B, N, d], t [B]) -> [B, N, d]` and their rotation kernels."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.groups import remove_com
from symdiff_jax.models.egnn import EGNN
from symdiff_jax.models.factory import build_dit, build_gamma_net
from symdiff_jax.symmetrise import haar_gamma, recursive_gamma

GROUPS = {2: "O2", 3: "O3"}


class ParticleNet(nnx.Module):
    """A velocity / score network of N identical particles in d dimensions.

    `kind`: "egnn" (E(d) x S_N-equivariant, deterministic), "dit" (S_N-equivariant only),
    "symdiff_h" (the DiT with gamma = Haar O(d)), "symdiff" (the DiT with the learned
    gamma of paper 002, eq. 7). The network itself is `__call__`; the losses and samplers
    symmetrise it with `gamma()` (None for "egnn" and "dit").

    Args:
      kind: one of the above.
      dim: d (2 or 3).
      m: `config.model` (`egnn.{hidden, num_layers}`, DiT and `gamma.*` sizes).
      rngs: parameter keys.
    """

    def __init__(self, kind: str, dim: int, m, rngs: nnx.Rngs):
        if kind not in ("egnn", "dit", "symdiff_h", "symdiff"):
            raise ValueError(f"model.kind must be egnn, dit, symdiff_h or symdiff; got {kind!r}.")
        self.kind, self.dim = kind, dim
        self.gamma_net = nnx.data(None)
        if kind == "egnn":
            self.net = EGNN(1, hidden=m.egnn.hidden, num_layers=m.egnn.num_layers, rngs=rngs)
            return
        self.net = build_dit(m, 0, rngs, n_dims=dim)
        if kind == "symdiff":
            self.gamma_net = nnx.data(build_gamma_net(m, self.net, rngs, n_dims=dim))

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        """`[B, N, d]`, `[B]` -> the CoM-free output `[B, N, d]`."""
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:-2])
        if self.kind == "egnn":
            x_out, _ = self.net(x, jnp.ones(x.shape[:-1] + (1,), x.dtype), None, t)
            return remove_com(x_out - x)
        out, _ = self.net(x, jnp.zeros(x.shape[:-1] + (0,), x.dtype), t)
        return remove_com(out)

    def gamma(self) -> Callable | None:
        """`gamma(key, x, t) -> R [B, d, d]` of the SymDiff kinds; None otherwise."""
        group = GROUPS[self.dim]
        if self.kind == "symdiff_h":
            return haar_gamma(group)
        if self.kind != "symdiff":
            return None
        gamma_net = self.gamma_net

        def f(x, eta, t):
            return gamma_net(x, eta, t)

        return recursive_gamma(f, group, gamma_net.noise_dims)


def abstract_state(config):
    """`(graphdef, TrainState of ShapeDtypeStructs)`: the restore target of a run's checkpoints."""
    from experiments.common import state as common_state

    return common_state.abstract_state(config, functools.partial(build_net, config))


def build_net(config, key: jax.Array) -> ParticleNet:
    """The `ParticleNet` of `config.model` for `config.system`'s dimension."""
    from symdiff_jax.systems import get_system

    dim = get_system(config.system).dim
    return ParticleNet(config.model.kind, dim, config.model, nnx.Rngs(params=key))
