"""Timing compiled JAX functions: medians of synchronised calls, memory, FLOPs, rooflines."""

from __future__ import annotations

import resource
import time
from typing import Any

import jax
import jax.numpy as jnp


def _block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def _block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def time_calls(fn, num: int) -> list[float]:
    """Wall seconds of `num` synchronised calls of `fn()`."""
    times = []
    for _ in range(num):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return times


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_device_mb() -> float | None:
    """Peak memory in use on the first local device (MiB), where the backend reports it."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def compiled_buffers_mb(compiled) -> tuple[float | None, float | None]:
    """`(arguments + temporaries, temporaries)` in MiB of a compiled XLA executable.

    None where the backend has no memory analysis.
    """
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None, None
    args, temp = analysis.argument_size_in_bytes, analysis.temp_size_in_bytes
    return (args + temp) / 2**20, temp / 2**20


def compiled_flops(compiled) -> float | None:
    """Floating-point operations of one call of a compiled (or lowered) XLA program.

    XLA's own count (`cost_analysis()`): `2 m n k` per matmul, about one per element
    for elementwise ops. A `while` loop's body (a `lax.scan`) counts once, so this is
    meant for straight-line programs such as one train or denoising step. A lowered
    program's count comes before XLA's optimisations, without compiling (the QM9 train
    step: 147.0 GFLOP lowered, 147.4 compiled). None where the backend gives no count.
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # one dict per program in older JAX
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops > 0 else None


def matmul_peak_gflop_per_s(dtype=None, size: int | None = None, num: int = 10) -> float:
    """Measured throughput of one square matmul on the first device, in GFLOP/s.

    The ceiling for the models' matmuls on this machine: `size x size` operands in
    `dtype` (None: float32; `jnp.bfloat16` as the models' mixed precision runs it,
    products accumulated in float32), `2 size^3` FLOP per call, best of `num` calls
    after one warm-up (the least disturbed one, as a ceiling should be). The default
    size, 1024 on CPUs (the fastest of 1024, 2048 and 3072 on a 2-core AMD EPYC) and
    8192 on accelerators, keeps the call long against its dispatch.
    """
    device = jax.local_devices()[0]
    if size is None:
        size = 1024 if device.platform == "cpu" else 8192
    if size < 1 or num < 1:
        raise ValueError(f"size and num must be positive; got size={size}, num={num}.")
    dtype = jnp.float32 if dtype is None else dtype
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.device_put(jax.random.normal(k, (size, size), dtype), device) for k in keys)
    product = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    compiled = product.lower(a, b).compile()
    time_calls(lambda: compiled(a, b), 1)
    return 2.0 * size**3 / min(time_calls(lambda: compiled(a, b), num)) / 1e9


def roofline(flops: float | None, ms: float, peak_gflops: float) -> dict[str, float | None]:
    """`gflop` per call, the `gflop_per_s` reached in `ms`, their `utilisation` of the
    measured matmul peak, and the `floor_ms` a call would take at that peak."""
    if flops is None:
        return dict.fromkeys(("gflop", "gflop_per_s", "utilisation", "floor_ms"))
    rate = flops / ms / 1e6
    return {
        "gflop": flops / 1e9,
        "gflop_per_s": rate,
        "utilisation": rate / peak_gflops,
        "floor_ms": flops / peak_gflops / 1e6,
    }


def timed_compile(jitted, *args):
    """`(jitted.lower(*args).compile(), seconds it took)`."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start
