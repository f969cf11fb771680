"""Samples of a trained particle model: the (symmetrised) Euler or reverse-SDE sampler."""

from __future__ import annotations

import time

import jax
import numpy as np
from flax import nnx

from symdiff_jax import flow_matching, score_matching
from symdiff_jax.systems import get_system


def make_sampler(config, graphdef: nnx.GraphDef):
    """`jit((params, key) -> [sample.batch_size, N, d])` in the data's units.

    Flow matching: `flow_matching.euler_sample` from `N_U(0, I)` with `sample.num_steps`
    steps; score matching: `score_matching.reverse_sde_sample` of `diffusion.schedule`'s
    SDE down to `diffusion.t_min`. SymDiff kinds draw a fresh R ~ gamma at every step.
    """
    system = get_system(config.system)
    shape = (config.sample.batch_size, system.num_particles, system.dim)
    scale = config.data.scale

    def sample(params, key):
        model = nnx.merge(graphdef, params)
        k_prior, k_chain = jax.random.split(key)
        gamma = model.gamma()
        if config.generator == "flow":
            x = flow_matching.prior_sample(k_prior, shape)
            x = flow_matching.euler_sample(
                k_chain, x, model, num_steps=config.sample.num_steps, gamma=gamma
            )
        else:
            sde = score_matching.get_sde(config.diffusion.schedule)
            x = score_matching.prior_sample(k_prior, shape, sde)
            x = score_matching.reverse_sde_sample(
                k_chain,
                x,
                model,
                sde,
                num_steps=config.sample.num_steps,
                gamma=gamma,
                t_min=config.diffusion.t_min,
            )
        return x * scale

    return jax.jit(sample)


def generate(config, graphdef, params, key, num_samples: int) -> tuple[np.ndarray, float]:
    """`(samples [num_samples, N, d], seconds per 1000 samples)`.

    The time excludes compilation (one batch is drawn and discarded first).
    """
    sample = make_sampler(config, graphdef)
    jax.block_until_ready(sample(params, jax.random.fold_in(key, 2**31)))
    num_batches = -(-num_samples // config.sample.batch_size)
    start = time.perf_counter()
    out = [np.asarray(sample(params, jax.random.fold_in(key, i))) for i in range(num_batches)]
    seconds = time.perf_counter() - start
    samples = np.concatenate(out)[:num_samples]
    return samples, 1000.0 * seconds / (num_batches * config.sample.batch_size)
