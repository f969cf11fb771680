"""The particle data of a config: Metropolis splits from the cache, batches, references."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from symdiff_jax.systems import SamplingSettings, cached_splits, load_reference_split

DEVICE_KEYS = ("x",)


def cache_dir(data) -> str:
    """`data.cache_dir`, else `$SYMDIFF_JAX_DATA`, else `~/.cache/symdiff_jax/particles`."""
    return data.cache_dir or os.environ.get(
        "SYMDIFF_JAX_DATA", os.path.expanduser("~/.cache/symdiff_jax/particles")
    )


def _ints(text: str, count: int, key: str) -> list[int]:
    values = [int(v) for v in text.split(",")]
    if len(values) != count:
        raise ValueError(f"data.{key} must hold {count} comma-separated integers; got {text!r}.")
    return values


def load_splits(config) -> dict[str, np.ndarray]:
    """Train / val / test `[M, N, d]` of `config.system`, generated once into the cache."""
    data = config.data
    sizes = settings = None
    name = f"{config.system}_seed{data.split_seed}"
    if data.sizes:
        sizes = dict(zip(("train", "val", "test"), _ints(data.sizes, 3, "sizes"), strict=True))
        name += "_" + data.sizes.replace(",", "-")
    if data.sampling:
        settings = SamplingSettings(*_ints(data.sampling, 3, "sampling"))
        name += "_mcmc" + data.sampling.replace(",", "-")
    path = os.path.join(cache_dir(data), name + ".npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return cached_splits(path, config.system, data.split_seed, sizes, settings)


def evaluation_reference(config, splits: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """`(reference samples, its name)`: the published test split if `data.reference`, else ours."""
    if config.data.reference:
        return load_reference_split(config.data.reference, config.system, "test"), "published test"
    return splits["test"], "own test"


def train_batches(x: np.ndarray, batch_size: int, seed: int, start_step: int = 0) -> Iterator[dict]:
    """Batches `{"x": [B, N, d]}` of steps `start_step + 1, ...`, drawn with replacement.

    Step s draws from `default_rng([seed, s])`, so a resumed run sees the same batches.
    """
    step = start_step
    while True:
        step += 1
        idx = np.random.default_rng([seed, step]).integers(0, len(x), batch_size)
        yield {"x": x[idx]}


def fixed_batches(x: np.ndarray, batch_size: int, count: int) -> list[dict]:
    """The first `count` consecutive batches of `x` (validation)."""
    count = max(1, min(count, len(x) // batch_size))
    return [{"x": x[i * batch_size : (i + 1) * batch_size]} for i in range(count)]
