r"""Speed and memory of a QM9/GEOM config: train step, denoising step, sampling, target.

`python -m experiments.benchmark --config C [--config.key=value ...]` builds the model
of any QM9/GEOM config and measures, on one batch of real molecules (or a synthetic
batch when the dataset cannot be loaded):

  train_step_ms    median wall time of the jit-compiled, sharded train step (the one
                   `experiments.train` runs), over `--num_steps` (>= 10) calls after
                   `--warmup` calls; each call is synchronised (`block_until_ready`).
  compile_s        lowering + XLA compilation of that step (separately, ahead of time).
  sample_step_ms   median of one reverse (ancestral) step: one denoiser call + the
                   Gaussian update of paper 002's eq. 13, jit-compiled on its own
                   (so it includes a call's dispatch; see the bucketed figures below).
  sample_run_s     one full sampling run of the batch: `sample.num_steps` steps, prior
                   and final `p(x, h | z_0)` step, the whole `lax.scan` compiled once
                   (compile time reported as `sample_compile_s`).
  target_ms        the exact O(3) own-orbit symmetrised target of the batch
                   (`own_orbit_eps_target`, paper 000 eq. 6), jitted, median;
                   `target_overhead` = target_ms / train_step_ms.
  batch_max_atoms_mean  the mean size of the largest of `batch_size` training
                   molecules: the width a loader that trims each batch to its largest
                   molecule pads to (the official code's, see below).
  matmul_peak_gflop_per_s  the throughput of one large square matmul on the first
                   device, in the model's compute dtype: what the step's matmuls can
                   reach on this machine. Beside it, for the train step (`train_step_*`)
                   and the denoising step (`sample_step_*`): `gflop`, XLA's count of a
                   call's FLOPs (`compiled.cost_analysis()`); `gflop_per_s` reached;
                   `utilisation` = that rate over the peak; `floor_ms`, the time at the
                   peak. The floor bounds any speed-up without fewer FLOPs (fewer padded
                   atoms, another architecture) or a faster matmul.
  peak_rss_mb      peak resident memory of the process (`resource.getrusage`), and
                   `peak_device_mb` where the device reports it (GPUs).
  train_buffers_mb the train step's buffers as XLA's compiler assigns them
                   (`compiled.memory_analysis()`): its arguments (the state, the
                   batch) plus its temporaries at their peak, on any backend; the
                   temporaries alone are `train_temp_mb`. An estimate of the device
                   memory a batch needs, without the device (XLA:GPU assigns its own).

With size buckets (`bucket_widths`, by default the config's `data.bucket_sizes`, which
`experiments.train` and the samplers use: each batch holds molecules of one size range,
padded to the range's top), the train step is also timed at every width `w_b`, on
molecules of `w_{b-1} < n <= w_b` atoms, and averaged with the weights `f_b` = fraction
of training molecules in the bucket: `train_step_ms_bucketed` = sum_b f_b
train_step_ms(w_b) is the mean step of an epoch of bucketed batches (the same number of
batches as unbucketed ones), with its FLOPs weighted the same way
(`train_step_utilisation_bucketed`, `train_step_floor_ms_bucketed`). The denoising step
is timed at every width the way the samplers run it, inside one compiled sampling run of
`scan_steps` steps (its time over its `scan_steps + 1` denoiser calls, the last one the
final `p(x, h | z_0)`; median of `SCAN_RUNS` runs): `sample_step_ms_by_width`, their
weighted mean `sample_step_ms_bucketed`, and `sample_run_s_bucketed` =
`sample.num_steps + 1` such calls, the sampling time of `batch_size` molecules whose
sizes follow the data within a large bucketed sampling run (e.g. an evaluation's
10,000). Each width is two more compilations (`bucket_compile_s`, their total). A run of
exactly `batch_size` molecules is timed as the samplers plan it
(`data.sampling_batches`): `batch_size` sizes drawn from the data, cut into
`sample_plan` batches `[rows, width]`, each batch's denoising call timed the same way
(shapes the widths already timed are reused; the others are compiled too,
`plan_compile_s`): `sample_step_ms_planned` is the sum over the plan's batches
(`sample_step_gflop_planned` their FLOPs, `sample_step_floor_ms_planned` their time at
the matmul peak) and `sample_run_s_planned` = `sample.num_steps + 1` of those, the
figure to set against another code's sampling of that batch.

The table goes to stdout; its last line is one JSON object with every figure.
Sampling and the target run on the first device; the train step on a data mesh of
`--num_devices` devices (default all).

Comparing with the official PyTorch SymDiff (same machine, same session):

    # ours, the paper's QM9 model, batch 64 padded to 29 atoms (warm compilation
    # cache off by default, so compile_s is a cold compile)
    python -m experiments.benchmark --config configs/qm9_symdiff.py --batch_size 64 \
        --num_steps 10 --config.sample.num_steps=1000
    # the exact-target variant: target_overhead and its train step against the above
    python -m experiments.benchmark --config configs/qm9_symdiff_target.py --batch_size 64

For the official code (leozhangML/SymDiff), time its `train_epoch` inner step
(forward, `loss.backward()`, `optim.step()`, its EMA update) on batches as its loader
builds them: EDM's `collate_fn` trims each batch to its largest molecule, so at batch 64
on QM9 the official code trains at `batch_max_atoms_mean` = 24.9 atoms on average, not
29, while its sampler pads every batch to 29 (`max_n_nodes`). Time it with
`torch.set_num_threads` equal to the cores JAX uses, median of >= 10 after warm-up, and
its sampler's per-step `phi` call for `sample_step_ms`; run both back to back, nothing
else on the machine, and report the ratio. `--num_atoms` pads to another width (e.g.
a size bucket); `--sample_runs 0` skips the (long) full sampling run.

On Linux, glibc returns large freed blocks (XLA's per-call scratch memory, about 1.4 GB
for the QM9 SymDiff step at batch 64) to the kernel and takes them back on the next
call, page by page; on small VMs those page faults cost up to ~20% of a step. The
command-line tools keep that memory in the process (`runtime.keep_freed_memory`;
`peak_rss_mb` is unchanged, the memory is in use anyway); `--nokeep_freed_memory`
times glibc's defaults. The official PyTorch code gains from the same setting (run it
with `MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647`), so
compare like with like.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from experiments.common.state import compiled_with_model, make_schedule
from experiments.common.timing import (
    compiled_buffers_mb,
    compiled_flops,
    matmul_peak_gflop_per_s,
    peak_device_mb,
    peak_rss_mb,
    roofline,
    time_calls,
    timed_compile,
)
from experiments.qm9.benchmark_figures import (
    batch_max_atoms_mean,
    bucket_batches,
    bucket_figures,
    data_batch,
    planned_sampling,
    synthetic_batch,
    training_sizes,
)
from experiments.qm9.input_pipeline import dataset_of
from experiments.qm9.model import initial_state
from experiments.qm9.sampling import compiled_sampler
from experiments.qm9.train import make_loss_fn
from symdiff_jax.diffusion.samplers import ancestral_step, prior_sample
from symdiff_jax.losses.molecules import own_orbit_eps_target
from symdiff_jax.models.factory import compute_dtype
from symdiff_jax.models.parameters import count_params
from symdiff_jax.train import sharding

MIN_TIMED_STEPS = 10
SCAN_RUNS = 3  # timed short sampling runs per bucket width (median)


# ----------------------------------------------------------------------------- pieces


def reverse_step(model: nnx.Module, key, z, mask, schedule, num_steps: int, spec):
    """The first ancestral step (t = 1) of a batch `z`: one denoiser call + eq. 13's update."""
    d = spec.n_dims
    k_model, k_noise = jax.random.split(key)
    batch = z.shape[0]
    t = jnp.ones((batch,), z.dtype)
    s = jnp.full((batch,), (num_steps - 1) / num_steps, z.dtype)
    eps_x, eps_h = model(k_model, z[..., :d], z[..., d:], t, mask)
    eps = jnp.concatenate([eps_x, eps_h], -1)
    return ancestral_step(k_noise, z, eps, s, t, schedule, mask, True, d)


def _noisy_positions(key, positions, mask, schedule):
    """`(z_x, alpha, sigma)` at uniform times, as the train step draws them."""
    k_t, k_eps = jax.random.split(key)
    t = jax.random.uniform(k_t, (positions.shape[0],))
    alpha, sigma = schedule.alpha_sigma(t)
    eps = prior_sample(k_eps, positions.shape, mask, position_dims=positions.shape[-1])
    z = alpha[:, None, None] * positions + sigma[:, None, None] * eps
    return z, alpha, sigma


# ----------------------------------------------------------------------------- benchmark


def benchmark(
    config,
    *,
    batch_size: int | None = None,
    num_steps: int = MIN_TIMED_STEPS,
    warmup: int = 2,
    num_atoms: int | None = None,
    num_devices: int | None = None,
    fsdp: bool | None = None,
    sample_runs: int = 1,
    synthetic: bool = False,
    seed: int = 0,
    bucket_widths: Sequence[int] | None = None,
    scan_steps: int = 20,
) -> dict[str, Any]:
    """Measures the config's train step, sampling and symmetrised target.

    Args:
      config: a QM9/GEOM config (`configs/qm9_*.py`, `configs/geom_symdiff.py`).
      batch_size: molecules per batch (default `config.batch_size`); must divide by
        the device count.
      num_steps: timed train (and denoising, target) calls, at least 10.
      warmup: untimed calls first.
      num_atoms: padded width (default `config.data.max_atoms`).
      num_devices: devices of the data mesh (default all).
      fsdp: split the state FSDP-style (default `config.get("train_fsdp", False)`).
      sample_runs: full sampling runs timed (0 skips them; the median is reported).
      synthetic: time a synthetic batch instead of real molecules.
      seed: seeds the batch choice and the keys.
      bucket_widths: increasing padded widths of size buckets (the last one holding the
        largest molecule, e.g. `(16, 19, 23, 29)` for QM9); adds the per-width and the
        bucket-averaged train and denoising steps (see the module docstring). None: the
        config's `data.bucket_sizes`; `()`: no buckets.
      scan_steps: reverse steps of the short sampling runs that time each bucket width.

    Returns:
      A flat dict of the figures (see the module docstring).
    """
    if num_steps < MIN_TIMED_STEPS:
        raise ValueError(f"num_steps must be >= {MIN_TIMED_STEPS} for a median, got {num_steps}.")
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}.")
    if scan_steps < 1:
        raise ValueError(f"scan_steps must be >= 1, got {scan_steps}.")
    batch_size = int(batch_size or config.batch_size)
    fsdp = bool(config.get("train_fsdp", False) if fsdp is None else fsdp)
    dataset = dataset_of(config)
    spec = dataset.spec
    key = jax.random.key(seed)
    k_init, k_train, k_sample, k_target, k_step = jax.random.split(key, 5)
    if synthetic:
        host_batch, source, num_train = (
            synthetic_batch(config, batch_size, num_atoms, seed),
            "synthetic",
            None,
        )
    else:
        host_batch, source, num_train = data_batch(config, batch_size, num_atoms, seed)
    width = host_batch["mask"].shape[1]
    schedule = make_schedule(config.diffusion)
    if bucket_widths is None:
        bucket_widths = tuple(config.data.get("bucket_sizes", ()))
    sizes = training_sizes(config, synthetic)
    buckets = bucket_batches(config, batch_size, bucket_widths, sizes, synthetic, seed)

    # --- train step (sharded over the data mesh, as experiments.train runs it)
    mesh = sharding.make_mesh(num_devices)
    graphdef, state, optimizer = initial_state(config, k_init)
    num_params = count_params(state.params)
    shardings = sharding.state_shardings(state, mesh, fsdp=fsdp)
    state = sharding.place_state(state, shardings)
    batch = sharding.shard_batch(host_batch, mesh)
    k_train = sharding.replicate(k_train, mesh)
    step = sharding.make_sharded_train_step(
        graphdef,
        make_loss_fn(config, schedule),
        optimizer,
        mesh,
        shardings,
        ema_decay=config.optim.ema_decay,
        ema_warmup=config.optim.ema_warmup,
    )
    compiled, compile_s = timed_compile(step, state, batch, k_train)
    train_flops = compiled_flops(compiled)
    train_buffers_mb, train_temp_mb = compiled_buffers_mb(compiled)
    holder = {"state": state}
    del state

    def time_train(compiled, batch):
        def train_call():
            holder["state"], metrics = compiled(holder["state"], batch, k_train)
            return holder["state"], metrics

        time_calls(train_call, warmup)
        return time_calls(train_call, num_steps), train_call

    train_times, train_call = time_train(compiled, batch)
    train_ms = 1e3 * statistics.median(train_times)
    loss = float(jax.device_get(train_call()[1]["loss"]))
    bucket_compile_s = 0.0
    for bucket in buckets:
        bucket_batch = sharding.shard_batch(bucket["host"], mesh)
        compiled_b, seconds = timed_compile(step, holder["state"], bucket_batch, k_train)
        bucket_compile_s += seconds
        bucket["train_flops"] = compiled_flops(compiled_b)
        bucket["train_ms"] = 1e3 * statistics.median(time_train(compiled_b, bucket_batch)[0])

    # --- sampling and the target: one device
    device = jax.local_devices()[0]
    params = jax.device_put(sharding.host_local(holder.pop("state").ema_params), device)
    mask = jax.device_put(jnp.asarray(host_batch["mask"]), device)
    denoise = compiled_with_model(
        reverse_step, graphdef, schedule, int(config.sample.num_steps), spec
    )
    shape = mask.shape + (spec.n_dims + spec.num_features,)
    z = prior_sample(k_sample, shape, mask, com_free=True, position_dims=spec.n_dims)
    start = time.perf_counter()
    denoise_c = denoise.lower(params, k_step, z, mask).compile()
    step_compile_s = time.perf_counter() - start
    sample_flops = compiled_flops(denoise_c)
    time_calls(lambda: denoise_c(params, k_step, z, mask), warmup)
    sample_ms = 1e3 * statistics.median(
        time_calls(lambda: denoise_c(params, k_step, z, mask), num_steps)
    )
    # Per width, the denoising step as the samplers run it: inside one compiled run of
    # `scan_steps` steps (buffers reused across the `lax.scan`, no per-call dispatch).
    short_run = compiled_sampler(graphdef, schedule, scan_steps, config.sample.sampler, spec)

    def call_ms(host_mask) -> tuple[float, float]:
        """(ms per denoiser call inside the short run, its compile seconds)."""
        mask_b = jax.device_put(jnp.asarray(host_mask), device)
        run_b, seconds = timed_compile(short_run, params, k_sample, mask_b)
        call = functools.partial(run_b, params, k_sample, mask_b)
        time_calls(call, 1)
        return 1e3 * statistics.median(time_calls(call, SCAN_RUNS)) / (scan_steps + 1), seconds

    def call_flops(host_mask) -> float | None:
        """FLOPs of one denoising step of this shape (lowered, not compiled)."""
        mask_b = jax.ShapeDtypeStruct(host_mask.shape, mask.dtype)
        z_b = jax.ShapeDtypeStruct(host_mask.shape + shape[-1:], z.dtype)
        return compiled_flops(denoise.lower(params, k_step, z_b, mask_b))

    for bucket in buckets:
        bucket["sample_ms"], seconds = call_ms(bucket["host"]["mask"])
        bucket_compile_s += seconds
    planned = {}
    if buckets:
        timed = {(batch_size, b["width"]): b["sample_ms"] for b in buckets}
        planned = planned_sampling(
            config, batch_size, bucket_widths, sizes, seed, timed, call_ms, call_flops
        )

    sample_run_s = sample_compile_s = None
    if sample_runs > 0:
        sampler = compiled_sampler(
            graphdef, schedule, config.sample.num_steps, config.sample.sampler, spec
        )
        start = time.perf_counter()
        sampler_c = sampler.lower(params, k_sample, mask).compile()
        sample_compile_s = time.perf_counter() - start
        runs = time_calls(lambda: sampler_c(params, k_sample, mask), sample_runs)
        sample_run_s = statistics.median(runs)

    positions = jax.device_put(jnp.asarray(host_batch["positions"]), device)
    z_x, alpha, sigma = _noisy_positions(k_target, positions, mask, schedule)
    group = config.diffusion.target_group
    target = jax.jit(lambda z, x, a, s, m: own_orbit_eps_target(z, x, a, s, m, group))
    target_c = target.lower(z_x, positions, alpha, sigma, mask).compile()
    args = (z_x, positions, alpha, sigma, mask)
    time_calls(lambda: target_c(*args), warmup)
    target_ms = 1e3 * statistics.median(time_calls(lambda: target_c(*args), num_steps))
    peak = matmul_peak_gflop_per_s(compute_dtype(config.model))
    planned_gflop = planned.get("sample_step_gflop_planned")
    if planned_gflop is not None:
        planned["sample_step_floor_ms_planned"] = 1e3 * planned_gflop / peak

    return {
        "variant": config.get("variant", ""),
        "params": num_params,
        "batch_size": batch_size,
        "num_atoms": int(width),
        "batch_max_atoms_mean": batch_max_atoms_mean(sizes, batch_size),
        "data": source,
        "devices": int(mesh.size),
        "processes": jax.process_count(),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "fsdp": fsdp,
        "train_step_ms": train_ms,
        "train_step_ms_min": 1e3 * min(train_times),
        "train_loss": loss,
        "compile_s": compile_s,
        "epoch_s": None if num_train is None else train_ms / 1e3 * (num_train // batch_size),
        "sample_step_ms": sample_ms,
        "sample_step_compile_s": step_compile_s,
        "sample_num_steps": int(config.sample.num_steps),
        "sample_run_s": sample_run_s,
        "sample_compile_s": sample_compile_s,
        "s_per_molecule": None if sample_run_s is None else sample_run_s / batch_size,
        "target_ms": target_ms,
        "target_overhead": target_ms / train_ms,
        "peak_rss_mb": peak_rss_mb(),
        "peak_device_mb": peak_device_mb(),
        "train_buffers_mb": train_buffers_mb,
        "train_temp_mb": train_temp_mb,
        "jax_version": jax.__version__,
        "matmul_peak_gflop_per_s": peak,
        **_prefixed("train_step_", roofline(train_flops, train_ms, peak)),
        **_prefixed("sample_step_", roofline(sample_flops, sample_ms, peak)),
        **bucket_figures(
            buckets, bucket_compile_s, num_train, batch_size, config.sample.num_steps, peak
        ),
        **planned,
    }


def _prefixed(prefix: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in figures.items()}
