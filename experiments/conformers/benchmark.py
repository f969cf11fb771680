"""The training-time overhead of the symmetrised conformer target (paper 000, section 4.2)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from symdiff_jax.conformers.objectives import batch_symmetrised_target


def measure_target_overhead(
    config,
    graphdef,
    params,
    batch,
    key: jax.Array,
    loss_fns: Mapping[str, Callable],
    repeats: int = 20,
) -> dict[str, float]:
    """Median time of jitted loss + gradient with the data and the symmetrised target.

    Same batch, same parameters, same keys, the two compiled steps called alternately (so a
    slow spell of a shared machine hits both); the ratio is the training-time overhead of
    the exact O(3) x Aut(G) target (paper 000 reports 0.9-2.9% for its Monte Carlo one).
    Also the target alone (`bench/target_ms`).

    Args:
      config: the conformer config (`diffusion.target_group`).
      graphdef, params: the network.
      batch: one device batch.
      key: PRNG key of the losses.
      loss_fns: `{"data": loss_fn, "symmetrised": loss_fn}`, `(net, batch, key) -> {"loss"}`.
      repeats: timed calls of each (median).
    """
    fns = {}
    for target in ("data", "symmetrised"):
        loss_fn = loss_fns[target]

        def objective(p, b, k, loss_fn=loss_fn):
            return jnp.mean(loss_fn(nnx.merge(graphdef, p), b, k)["loss"])

        fns[target] = jax.jit(jax.value_and_grad(objective))
    x_t = batch["positions"] * 0.7
    fns["target"] = jax.jit(
        lambda b, x: batch_symmetrised_target(b, x, 0.7, 0.5, config.diffusion.target_group)
    )

    def call(name, i):
        if name == "target":
            return fns[name](batch, x_t)
        return fns[name](params, batch, jax.random.fold_in(key, i))

    times: dict[str, list[float]] = {name: [] for name in fns}
    for name in fns:
        jax.block_until_ready(call(name, 0))
    for i in range(repeats):
        for name in fns:
            t0 = time.perf_counter()
            jax.block_until_ready(call(name, i))
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {
        "bench/grad_step_ms_data": 1e3 * med["data"],
        "bench/grad_step_ms_symmetrised": 1e3 * med["symmetrised"],
        "bench/target_ms": 1e3 * med["target"],
        "bench/target_overhead": med["symmetrised"] / med["data"] - 1.0,
    }
