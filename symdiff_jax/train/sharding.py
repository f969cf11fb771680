"""Data parallelism with `jax.sharding`: one `data` mesh axis, plain `jit` (GSPMD).

The batch is split along its leading axis over the devices of a 1-D `Mesh`; the
training state is either replicated on every device or, FSDP-style, each large leaf
of the parameters, the optimiser state and the EMA is split along one axis (XLA
gathers it where the step needs it). The train step is `jax.jit(train_step)` with
`in_shardings`/`out_shardings` set and the old state donated; no `pmap`, no
`shard_map`: XLA inserts the gradient all-reduce (or the reduce-scatter/all-gather of
FSDP) itself, and the result is the single-device step up to float summation order.

Several hosts run one process each (JAX's multi-controller model): every process calls
`initialize_distributed` before anything touches a device, builds the same mesh over
all global devices, feeds only its own rows of each global batch
(`process_batch_slice`, assembled with `jax.make_array_from_process_local_data`), and
runs the same program. Checkpoints (Orbax) are written collectively by all processes
and restore onto any device layout, since `Checkpointer.restore` places each leaf on
the target's sharding.

Example (one host, every local device)::

    mesh = make_mesh()
    shardings = state_shardings(state, mesh, fsdp=False)
    state = place_state(state, shardings)
    step = make_sharded_train_step(graphdef, loss_fn, optimizer, mesh, shardings)
    key = replicate(key, mesh)
    for batch in batches:
        state, metrics = step(state, shard_batch(batch, mesh), key)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from symdiff_jax.train.state import TrainState
from symdiff_jax.train.step import DEFAULT_MAX_ABS_PARAM, LossFn, bind_train_step

__all__ = [
    "DATA_AXIS",
    "batch_from_process_local",
    "batch_sharding",
    "fsdp_spec",
    "host_local",
    "initialize_distributed",
    "is_main_process",
    "make_mesh",
    "make_sharded_train_step",
    "place_state",
    "process_batch_slice",
    "replicate",
    "replicated",
    "shard_batch",
    "state_shardings",
]

DATA_AXIS = "data"


# ----------------------------------------------------------------------------- processes


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | list[int] | None = None,
) -> bool:
    """Joins a multi-process JAX run (`jax.distributed.initialize`) when asked to.

    Must run before anything touches a device (creating an array, `jax.devices()`).
    With no arguments (or a single process without a coordinator) nothing happens and
    the run is an ordinary single-process one. On CPU, cross-process collectives use
    Gloo (JAX's default `jax_cpu_collectives_implementation`).

    Args:
      coordinator_address: `host:port` of process 0's coordinator service, identical
        on every process (e.g. `10.0.0.1:1234`).
      num_processes: total number of processes (usually one per host).
      process_id: this process's index in `[0, num_processes)`.
      local_device_ids: optional subset of this host's accelerators to use.

    Returns:
      True if `jax.distributed.initialize` was called, False for a single process.

    Raises:
      ValueError: an incomplete or inconsistent set of arguments.
      RuntimeError: JAX was already running computations in this process.
    """
    given = (coordinator_address, num_processes, process_id)
    if all(v is None for v in given):
        return False
    if coordinator_address is None and num_processes in (None, 1) and process_id in (None, 0):
        return False
    if any(v is None for v in given):
        raise ValueError(
            "A multi-process run needs all of --coordinator_address, --num_processes and "
            f"--process_id; got coordinator_address={coordinator_address!r}, "
            f"num_processes={num_processes!r}, process_id={process_id!r}."
        )
    host, _, port = str(coordinator_address).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"coordinator_address must look like 'host:port' (e.g. '10.0.0.1:1234'), got "
            f"{coordinator_address!r}."
        )
    num_processes, process_id = int(num_processes), int(process_id)
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"process_id must be in [0, {num_processes}) for num_processes={num_processes}, "
            f"got {process_id}."
        )
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            local_device_ids=local_device_ids,
        )
    except RuntimeError as e:
        raise RuntimeError(
            f"jax.distributed.initialize failed: {e}. It must be called once per process, "
            "before any JAX array is created or any device is queried."
        ) from e
    return True


def is_main_process() -> bool:
    """True on process 0 (the one that writes metrics, pictures and logs)."""
    return jax.process_index() == 0


def process_batch_slice(global_batch: Any, process_index: int, process_count: int) -> Any:
    """This process's rows of a global batch: the `process_index`-th of `process_count` blocks.

    Every process iterates over the same (seeded) sequence of global batches and keeps
    only its contiguous block of rows; the block order matches the device order of
    `make_mesh`, so `batch_from_process_local` reassembles exactly the global batch.

    Args:
      global_batch: a pytree of arrays with a common leading (batch) axis `B`.
      process_index: `jax.process_index()`.
      process_count: `jax.process_count()`; must divide `B`.

    Returns:
      The pytree with every leaf cut to rows `[i B / P, (i + 1) B / P)`.
    """
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index must be in [0, process_count), got process_index={process_index}, "
            f"process_count={process_count}."
        )
    size = _batch_size(global_batch)
    if size % process_count:
        raise ValueError(
            f"The global batch size {size} is not divisible by the number of processes "
            f"{process_count}; choose a batch size that is a multiple of {process_count}."
        )
    rows = size // process_count
    start = process_index * rows
    return jax.tree.map(lambda x: x[start : start + rows], global_batch)


# ----------------------------------------------------------------------------- meshes


def make_mesh(num_devices: int | None = None, axis: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over the first `num_devices` global devices (all by default).

    The devices keep JAX's global order (by process, then id), so each process's devices
    are one contiguous block of the axis. The axis type is `Auto` (GSPMD propagation;
    `jax.make_mesh` would default to explicit sharding-in-types).

    Args:
      num_devices: how many devices (default every device of every process); a
        multi-process run must use all of them.
      axis: the axis name.

    Returns:
      `Mesh` with `mesh.shape == {axis: num_devices}`.
    """
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if isinstance(num_devices, bool) or not 1 <= int(num_devices) <= len(devices):
        raise ValueError(
            f"num_devices must be between 1 and the {len(devices)} available device(s), got "
            f"{num_devices!r}. Fake more CPU devices with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N (before importing jax)."
        )
    if jax.process_count() > 1 and int(num_devices) != len(devices):
        raise ValueError(
            f"A multi-process run ({jax.process_count()} processes) must use every device "
            f"({len(devices)}), got num_devices={num_devices}."
        )
    chosen = np.asarray(devices[: int(num_devices)])
    return Mesh(chosen, (axis,), axis_types=(AxisType.Auto,))


def _axis(mesh: Mesh) -> str:
    if len(mesh.axis_names) != 1:
        raise ValueError(
            f"Expected a 1-D data mesh, got axes {mesh.axis_names}; build it with make_mesh()."
        )
    return mesh.axis_names[0]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's data axis, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(_axis(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


# ----------------------------------------------------------------------------- batches


def _batch_size(batch: Any) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("The batch holds no arrays.")
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = jax.tree.map(np.shape, batch)
        raise ValueError(
            f"Every batch array needs the same leading batch axis; got shapes {shapes}."
        )
    return sizes.pop()


def _check_divisible(size: int, mesh: Mesh) -> None:
    if size % mesh.size:
        raise ValueError(
            f"The batch size {size} is not divisible by the {mesh.size} devices of the mesh; "
            f"use a batch size that is a multiple of {mesh.size} (e.g. "
            f"{max(mesh.size, size - size % mesh.size)}) or fewer devices."
        )


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """The global batch as arrays split along their leading axis over the mesh.

    With one process the whole batch is transferred (`jax.device_put`); with several,
    each process transfers only its own rows (`process_batch_slice`), so every process
    may hold the full global batch on the host but only its block reaches its devices.

    Args:
      batch: a pytree of arrays (numpy or JAX) with a common leading axis `B`.
      mesh: a 1-D data mesh; its size must divide `B`.

    Returns:
      The pytree of global `jax.Array`s with sharding `batch_sharding(mesh)`.

    Raises:
      ValueError: `B` not divisible by the device count (or by the process count).
    """
    size = _batch_size(batch)
    _check_divisible(size, mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, batch_sharding(mesh))
    local = process_batch_slice(batch, jax.process_index(), jax.process_count())
    return batch_from_process_local(local, mesh)


def batch_from_process_local(local_batch: Any, mesh: Mesh) -> Any:
    """Global arrays from each process's own rows (`jax.make_array_from_process_local_data`).

    Every process passes a pytree of the same structure and the same local batch size
    `b`; the global batch is the processes' blocks stacked in process order (size
    `b * process_count`).
    """
    sharding = batch_sharding(mesh)
    local_size = _batch_size(local_batch)
    global_size = local_size * jax.process_count()
    _check_divisible(global_size, mesh)

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, (global_size,) + x.shape[1:])

    return jax.tree.map(one, local_batch)


# ----------------------------------------------------------------------------- state


def fsdp_spec(
    shape: tuple[int, ...], num_shards: int, axis: str = DATA_AXIS, min_size: int = 1024
) -> PartitionSpec:
    """Which axis of a leaf of `shape` FSDP splits: the largest one divisible by `num_shards`.

    Ties go to the earliest axis. Leaves with fewer than `min_size` elements (biases,
    norms, scalars) or without a divisible axis stay replicated (`P()`): gathering them
    would cost more than the memory they take.
    """
    size = int(np.prod(shape)) if len(shape) else 1
    if num_shards <= 1 or size < min_size:
        return PartitionSpec()
    candidates = [i for i, d in enumerate(shape) if d >= num_shards and d % num_shards == 0]
    if not candidates:
        return PartitionSpec()
    best = max(candidates, key=lambda i: (shape[i], -i))
    return PartitionSpec(*([None] * best + [axis]))


def state_shardings(
    state: TrainState, mesh: Mesh, fsdp: bool = False, *, min_size: int = 1024
) -> TrainState:
    """A `TrainState` of `NamedSharding`s for `state` (usable as jit in/out shardings).

    Args:
      state: the training state (arrays or `jax.ShapeDtypeStruct`s).
      mesh: a 1-D data mesh.
      fsdp: False: everything replicated (plain data parallelism). True: every leaf of
        `params`, `opt_state` and `ema_params` with at least `min_size` elements is
        split along its largest axis divisible by the device count (`fsdp_spec`); the
        step counter and small leaves stay replicated.
      min_size: the smallest leaf FSDP splits.

    Returns:
      A pytree of the state's structure with a `NamedSharding` per leaf.
    """
    axis = _axis(mesh)
    rep = replicated(mesh)
    if not fsdp:
        return jax.tree.map(lambda _: rep, state)

    def one(leaf):
        spec = fsdp_spec(tuple(np.shape(leaf)), mesh.size, axis, min_size)
        return NamedSharding(mesh, spec)

    return TrainState(
        step=rep,
        params=jax.tree.map(one, state.params),
        opt_state=jax.tree.map(one, state.opt_state),
        ema_params=jax.tree.map(one, state.ema_params),
    )


def place_state(state: Any, shardings: Any) -> Any:
    """`state` moved onto `shardings` (a matching pytree, or one sharding for every leaf).

    Works across processes: every process passes the same values and keeps its part.
    Typed PRNG key arrays are moved as their key data.
    """
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, state)
    if jax.process_count() == 1:
        return jax.device_put(state, shardings)
    return jax.tree.map(_put_global, state, shardings)


def _put_global(x: Any, sharding: jax.sharding.Sharding) -> jax.Array:
    """One host-identical value onto a sharding that spans several processes."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _put_global(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return jax.device_put(np.asarray(jax.device_get(x)), sharding)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """A full copy of `tree` (arrays, PRNG keys) on every device of the mesh."""
    return place_state(tree, replicated(mesh))


def host_local(tree: Any) -> Any:
    """Arrays holding the full values on this process's devices only.

    Single-process arrays come back unchanged. In a multi-process run the global arrays
    (replicated or FSDP-split) are gathered, so that per-process work (sampling,
    evaluation) can run on local devices with ordinary `jit`.
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if x.is_fully_replicated:
            return x.addressable_data(0)
        return jax.numpy.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


# ----------------------------------------------------------------------------- the step


def make_sharded_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    shardings: TrainState,
    *,
    ema_decay: float = 0.9999,
    ema_warmup: bool = True,
    max_abs_param: float | None = DEFAULT_MAX_ABS_PARAM,
    donate: bool = True,
) -> Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, dict]]:
    """`jax.jit(train_step)` over a data mesh: batch split, state on `shardings`.

    Args:
      graphdef, loss_fn, optimizer, ema_decay, ema_warmup, max_abs_param: as for
        `train_step`.
      mesh: the 1-D data mesh.
      shardings: `state_shardings(state, mesh, fsdp)`; the new state comes out on the
        same shardings, so the old one's buffers are reused when `donate`.
      donate: donate the input state (argument 0).

    Returns:
      `step(state, batch, key) -> (state, metrics)`: `batch` split on its leading axis
      (pass it through `shard_batch`), `key` and the metrics replicated.
    """

    options = {"ema_decay": ema_decay, "ema_warmup": ema_warmup, "max_abs_param": max_abs_param}
    step = bind_train_step(graphdef, loss_fn, optimizer, **options)
    rep = replicated(mesh)
    return jax.jit(
        step,
        in_shardings=(shardings, batch_sharding(mesh), rep),
        out_shardings=(shardings, rep),
        donate_argnums=(0,) if donate else (),
    )
