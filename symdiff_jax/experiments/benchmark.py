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
import math
import resource
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from symdiff_jax.data import batch_iterator, sampling_batches
from symdiff_jax.diffusion.molecules import own_orbit_eps_target, sample_molecules
from symdiff_jax.diffusion.samplers import ancestral_step, prior_sample
from symdiff_jax.experiments import qm9
from symdiff_jax.models.factory import compute_dtype
from symdiff_jax.train import sharding
from symdiff_jax.train.state import count_parameters

MIN_TIMED_STEPS = 10
SCAN_RUNS = 3  # timed short sampling runs per bucket width (median)


# ----------------------------------------------------------------------------- data


def synthetic_batch(
    config,
    batch_size: int,
    num_atoms: int | None = None,
    seed: int = 0,
    min_atoms: int | None = None,
) -> dict[str, np.ndarray]:
    """A random batch shaped like the config's dataset (sizes in `[n/2, n]`, centred).

    The speed of a step does not depend on the values, only on the shapes; this stands
    in when the dataset is not available. `min_atoms` raises the smallest size.
    """
    dataset = qm9.dataset_of(config)
    n = int(num_atoms or config.data.max_atoms)
    rng = np.random.default_rng(seed)
    low = max(2, n // 2) if min_atoms is None else min(max(1, int(min_atoms)), n)
    sizes = rng.integers(low, n + 1, size=batch_size)
    mask = (np.arange(n)[None] < sizes[:, None]).astype(np.float32)
    charges = rng.choice(np.asarray(dataset.atom_types), size=(batch_size, n)) * (mask > 0)
    positions = rng.normal(0.0, 1.5, (batch_size, n, 3)) * mask[..., None]
    positions -= positions.sum(1, keepdims=True) / sizes[:, None, None] * mask[..., None]
    return {
        "positions": positions.astype(np.float32),
        "h": np.asarray(dataset.featurise(charges.astype(np.int32), mask), np.float32),
        "charges": charges.astype(np.int32),
        "mask": mask,
    }


def data_batch(
    config,
    batch_size: int,
    num_atoms: int | None = None,
    seed: int = 0,
    min_atoms: int | None = None,
) -> tuple[dict[str, np.ndarray], str, int | None]:
    """`(batch, source, num_train)`: `batch_size` random train molecules of <= `num_atoms` atoms.

    Padded to width `num_atoms` (default `config.data.max_atoms`) and centred, as the
    train loop feeds them; `source` is the dataset's name, or "synthetic" when loading
    fails (then `num_train` is None, else the size of the train split). With
    `min_atoms`, only molecules of at least that many atoms (one size bucket).
    """
    n = int(num_atoms or config.data.max_atoms)
    try:
        train = qm9.load_split(config, "train")
    except Exception as e:  # no dataset on this machine: shapes are what matters
        logging.warning("Dataset not available (%s); timing a synthetic batch.", e)
        return synthetic_batch(config, batch_size, n, seed, min_atoms), "synthetic", None
    sizes = train["num_atoms"]
    keep = np.flatnonzero((sizes <= n) & (sizes >= (min_atoms or 0)))
    if len(keep) < batch_size:
        raise ValueError(
            f"Only {len(keep)} training molecules have {min_atoms or 0}..{n} atoms; lower "
            "--batch_size or widen the size range (--num_atoms, bucket widths)."
        )
    pick = np.sort(np.random.default_rng(seed).choice(keep, batch_size, replace=False))
    subset = {
        "positions": train["positions"][pick, :n],
        "charges": train["charges"][pick, :n],
        "num_atoms": train["num_atoms"][pick],
    }
    dataset = qm9.dataset_of(config)
    batch = next(batch_iterator(subset, batch_size, shuffle=False, features=dataset.featurise))
    host = {k: np.asarray(batch[k]) for k in qm9.DEVICE_KEYS}
    return host, dataset.name, int(len(train["num_atoms"]))


# ----------------------------------------------------------------------------- timing


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


# ----------------------------------------------------------------------------- pieces


def _one_reverse_step(graphdef, schedule, num_steps: int, spec):
    """`jit((params, key, z, mask) -> z_s)`: the first ancestral step (t = 1)."""
    d = spec.n_dims

    def step(params, key, z, mask):
        model = nnx.merge(graphdef, params)
        k_model, k_noise = jax.random.split(key)
        batch = z.shape[0]
        t = jnp.ones((batch,), z.dtype)
        s = jnp.full((batch,), (num_steps - 1) / num_steps, z.dtype)
        eps_x, eps_h = model(k_model, z[..., :d], z[..., d:], t, mask)
        eps = jnp.concatenate([eps_x, eps_h], -1)
        return ancestral_step(k_noise, z, eps, s, t, schedule, mask, True, d)

    return jax.jit(step)


def _sampler(graphdef, schedule, num_steps: int, sampler: str, spec):
    def sample(params, key, mask):
        model = nnx.merge(graphdef, params)
        return sample_molecules(
            model, key, mask, schedule, num_steps=num_steps, spec=spec, sampler=sampler
        )

    return jax.jit(sample)


def _noisy_positions(key, positions, mask, schedule):
    """`(z_x, alpha, sigma)` at uniform times, as the train step draws them."""
    k_t, k_eps = jax.random.split(key)
    t = jax.random.uniform(k_t, (positions.shape[0],))
    alpha, sigma = schedule.alpha_sigma(t)
    eps = prior_sample(k_eps, positions.shape, mask, position_dims=positions.shape[-1])
    z = alpha[:, None, None] * positions + sigma[:, None, None] * eps
    return z, alpha, sigma


def train_sizes(config) -> np.ndarray | None:
    """Atom counts of the training molecules, or None when the dataset is not available."""
    try:
        return np.asarray(qm9.load_split(config, "train")["num_atoms"])
    except Exception:  # no dataset on this machine
        return None


def bucket_fractions(sizes: np.ndarray, widths: Sequence[int]) -> list[float]:
    """Fraction of the molecules in each size bucket `(w_{b-1}, w_b]` (`w_{-1} = 0`).

    Args:
      sizes: `[M]` atom counts.
      widths: increasing bucket widths; the last must hold the largest molecule.

    Returns:
      One fraction per width, summing to 1.
    """
    widths = [int(w) for w in widths]
    if not widths or any(b <= a for a, b in zip(widths[:-1], widths[1:], strict=False)):
        raise ValueError(f"Bucket widths must be increasing and non-empty; got {widths}.")
    sizes = np.asarray(sizes)
    if sizes.size == 0 or sizes.max() > widths[-1]:
        raise ValueError(
            f"The largest bucket ({widths[-1]} atoms) must hold every molecule; the largest "
            f"has {int(sizes.max()) if sizes.size else 'none'}. Add a wider bucket."
        )
    edges = np.asarray([0, *widths])
    counts = [
        np.sum((sizes > lo) & (sizes <= hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    return [float(c) / sizes.size for c in counts]


def batch_max_atoms_mean(sizes: np.ndarray, batch_size: int) -> float:
    """Expected size of the largest of `batch_size` molecules drawn from `sizes`.

    A loader that trims each batch to its largest molecule (EDM's `collate_fn`, which the
    official SymDiff trains with) pads to this width on average. With `F` the empirical
    distribution function of `sizes` and draws with replacement,
    `E[max] = sum_{k >= 1} (1 - F(k - 1)^batch_size)`.

    Args:
      sizes: `[M]` positive atom counts.
      batch_size: molecules per batch, >= 1.
    """
    sizes = np.asarray(sizes)
    if sizes.size == 0 or sizes.min() < 1 or batch_size < 1:
        raise ValueError(
            f"Need positive sizes and batch_size >= 1; got {sizes.size} sizes "
            f"(smallest {sizes.min() if sizes.size else None}) and batch_size {batch_size}."
        )
    counts = np.bincount(sizes.astype(np.int64))
    cdf_below = np.concatenate([[0.0], np.cumsum(counts)[:-1] / sizes.size])  # F(k - 1)
    return float(np.sum(1.0 - cdf_below[1:] ** batch_size))


def _timed_compile(jitted, *args):
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


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
      config: a QM9/GEOM config (`symdiff_jax.experiments.qm9_config`).
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
    dataset = qm9.dataset_of(config)
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
    schedule = qm9.make_schedule(config)
    if bucket_widths is None:
        bucket_widths = tuple(config.data.get("bucket_sizes", ()))
    sizes = _training_sizes(config, synthetic)
    buckets = _bucket_batches(config, batch_size, bucket_widths, sizes, synthetic, seed)

    # --- train step (sharded over the data mesh, as experiments.train runs it)
    mesh = sharding.make_mesh(num_devices)
    graphdef, state, optimizer = qm9.initial_state(config, k_init)
    num_params = count_parameters(state.params)
    shardings = sharding.state_shardings(state, mesh, fsdp=fsdp)
    state = sharding.place_state(state, shardings)
    batch = sharding.shard_batch(host_batch, mesh)
    k_train = sharding.replicate(k_train, mesh)
    step = sharding.make_sharded_train_step(
        graphdef,
        qm9.make_loss_fn(config, schedule),
        optimizer,
        mesh,
        shardings,
        ema_decay=config.optim.ema_decay,
        ema_warmup=config.optim.ema_warmup,
    )
    compiled, compile_s = _timed_compile(step, state, batch, k_train)
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
        compiled_b, seconds = _timed_compile(step, holder["state"], bucket_batch, k_train)
        bucket_compile_s += seconds
        bucket["train_flops"] = compiled_flops(compiled_b)
        bucket["train_ms"] = 1e3 * statistics.median(time_train(compiled_b, bucket_batch)[0])

    # --- sampling and the target: one device
    device = jax.local_devices()[0]
    params = jax.device_put(sharding.host_local(holder.pop("state").ema_params), device)
    mask = jax.device_put(jnp.asarray(host_batch["mask"]), device)
    denoise = _one_reverse_step(graphdef, schedule, config.sample.num_steps, spec)
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
    short_run = _sampler(graphdef, schedule, scan_steps, config.sample.sampler, spec)

    def call_ms(host_mask) -> tuple[float, float]:
        """(ms per denoiser call inside the short run, its compile seconds)."""
        mask_b = jax.device_put(jnp.asarray(host_mask), device)
        run_b, seconds = _timed_compile(short_run, params, k_sample, mask_b)
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
        planned = _planned_sampling(
            config, batch_size, bucket_widths, sizes, seed, timed, call_ms, call_flops
        )

    sample_run_s = sample_compile_s = None
    if sample_runs > 0:
        sampler = _sampler(graphdef, schedule, config.sample.num_steps, config.sample.sampler, spec)
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
        **_bucket_figures(
            buckets, bucket_compile_s, num_train, batch_size, config.sample.num_steps, peak
        ),
        **planned,
    }


def _bucket_batches(config, batch_size, widths, sizes, synthetic, seed) -> list[dict[str, Any]]:
    """One host batch per size bucket, with the bucket's share of the training molecules."""
    if not widths:
        return []
    widths = [int(w) for w in widths]
    fractions = bucket_fractions(sizes, widths)
    buckets, low = [], 1
    for w, f in zip(widths, fractions, strict=True):
        if synthetic:
            host = synthetic_batch(config, batch_size, w, seed, min_atoms=low)
        else:
            host = data_batch(config, batch_size, w, seed, min_atoms=low)[0]
        buckets.append({"width": w, "fraction": f, "host": host})
        low = w + 1
    return buckets


def _training_sizes(config, synthetic: bool) -> np.ndarray:
    """The training split's molecule sizes (synthetic: each of 2..max_atoms once)."""
    sizes = None if synthetic else train_sizes(config)
    return np.arange(2, int(config.data.max_atoms) + 1) if sizes is None else sizes


def _planned_sampling(
    config, batch_size, widths, training_sizes, seed, timed, call_ms, call_flops=None
):
    """The denoising step of `batch_size` molecules as `data.sampling_batches` plans it.

    The molecules' sizes are drawn from `training_sizes`; `timed` maps `(rows, width)`
    shapes already timed to ms per call (filled in here); `call_ms(mask)` times another
    shape; `call_flops(mask)`, if given, counts a batch's FLOPs per call
    (`sample_step_gflop_planned`, the plan's total).
    """
    sizes = np.random.default_rng(seed).choice(training_sizes, size=batch_size)
    plan = sampling_batches(
        sizes, batch_size, bucket_sizes=widths, max_atoms=int(config.data.max_atoms)
    )
    compile_s, step_ms, flops = 0.0, 0.0, []
    for rows, width in plan:
        shape = (len(rows), width)
        mask = (np.arange(width)[None] < sizes[rows, None]).astype(np.float32)
        if shape not in timed:
            timed[shape], seconds = call_ms(mask)
            compile_s += seconds
        step_ms += timed[shape]
        flops.append(None if call_flops is None else call_flops(mask))
    return {
        "sample_step_gflop_planned": None if None in flops else sum(flops) / 1e9,
        "sample_plan": [[len(rows), width] for rows, width in plan],
        "sample_plan_atoms": int(sizes.sum()),
        "sample_step_ms_planned": step_ms,
        "sample_run_s_planned": step_ms * (int(config.sample.num_steps) + 1) / 1e3,
        "plan_compile_s": compile_s,
    }


def _prefixed(prefix: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in figures.items()}


def _bucket_figures(
    buckets, compile_s, num_train, batch_size, num_steps, peak_gflops
) -> dict[str, Any]:
    if not buckets:
        return {}
    weighted = lambda k: sum(b["fraction"] * b[k] for b in buckets)  # noqa: E731
    train_ms = weighted("train_ms")
    flops = None if any(b["train_flops"] is None for b in buckets) else weighted("train_flops")
    bucketed = roofline(flops, train_ms, peak_gflops)
    return {
        "bucket_widths": [b["width"] for b in buckets],
        "bucket_fractions": [b["fraction"] for b in buckets],
        "train_step_ms_by_width": [b["train_ms"] for b in buckets],
        "train_step_gflop_by_width": [
            None if b["train_flops"] is None else b["train_flops"] / 1e9 for b in buckets
        ],
        "sample_step_ms_by_width": [b["sample_ms"] for b in buckets],
        "train_step_ms_bucketed": train_ms,
        "train_step_utilisation_bucketed": bucketed["utilisation"],
        "train_step_floor_ms_bucketed": bucketed["floor_ms"],
        "sample_step_ms_bucketed": weighted("sample_ms"),
        "sample_run_s_bucketed": weighted("sample_ms") * (int(num_steps) + 1) / 1e3,
        "epoch_s_bucketed": None
        if num_train is None
        else train_ms / 1e3 * (num_train // batch_size),
        "bucket_compile_s": compile_s,
    }


_ROWS = (
    ("largest per batch", "batch_max_atoms_mean", "atoms"),
    ("train step", "train_step_ms", "ms"),
    ("train step (min)", "train_step_ms_min", "ms"),
    ("  work", "train_step_gflop", "GFLOP"),
    ("  of the matmul peak", "train_step_utilisation", ""),
    ("  at the matmul peak", "train_step_floor_ms", "ms"),
    ("train step compile", "compile_s", "s"),
    ("epoch estimate", "epoch_s", "s"),
    ("train step, bucketed", "train_step_ms_bucketed", "ms"),
    ("  of the matmul peak", "train_step_utilisation_bucketed", ""),
    ("  at the matmul peak", "train_step_floor_ms_bucketed", "ms"),
    ("epoch, bucketed", "epoch_s_bucketed", "s"),
    ("denoising step", "sample_step_ms", "ms"),
    ("  of the matmul peak", "sample_step_utilisation", ""),
    ("  at the matmul peak", "sample_step_floor_ms", "ms"),
    ("denoising, bucketed", "sample_step_ms_bucketed", "ms"),
    ("denoising, planned", "sample_step_ms_planned", "ms"),
    ("  at the matmul peak", "sample_step_floor_ms_planned", "ms"),
    ("full sampling run", "sample_run_s", "s"),
    ("  bucketed", "sample_run_s_bucketed", "s"),
    ("  planned", "sample_run_s_planned", "s"),
    ("  per molecule", "s_per_molecule", "s"),
    ("  compile", "sample_compile_s", "s"),
    ("exact O(3) target", "target_ms", "ms"),
    ("  / train step", "target_overhead", ""),
    ("peak RSS", "peak_rss_mb", "MiB"),
    ("peak device memory", "peak_device_mb", "MiB"),
    ("train step buffers", "train_buffers_mb", "MiB"),
    ("matmul peak", "matmul_peak_gflop_per_s", "GFLOP/s"),
)


def format_table(results: dict[str, Any]) -> str:
    """A two-column text table of the figures (missing ones shown as '-')."""
    head = (
        f"{results.get('variant', '')}: {results['params']:,} parameters, batch "
        f"{results['batch_size']} x {results['num_atoms']} atoms ({results['data']}), "
        f"{results['devices']} {results['platform']} device(s)"
        + (", FSDP" if results.get("fsdp") else "")
    )
    lines = [head, "-" * len(head)]
    for label, key, unit in _ROWS:
        value = results.get(key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            text = "-"
        elif key == "target_overhead" or "utilisation" in key:
            text = f"{100 * value:.2f} %"
        else:
            text = f"{value:,.4g} {unit}".rstrip()
        lines.append(f"{label:<22}{text:>16}")
    return "\n".join(lines)
