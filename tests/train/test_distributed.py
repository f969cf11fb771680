"""Two `jax.distributed` processes on localhost give the loss of one process.

Each worker (this file run as a script) joins a 2-process run over a free local port
with one CPU device, builds the 2-device data mesh that spans both processes, feeds
only its own half of every global batch (`process_batch_slice` +
`jax.make_array_from_process_local_data`) and trains `configs/qm9_dit.py:smoke` for 2
steps, replicated and FSDP-split; the FSDP state is checkpointed collectively (Orbax).
The test compares with the same steps in this (single-process, single-device) process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

if __name__ == "__main__":  # a worker: one CPU device, chosen before JAX is imported
    os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

import configs  # noqa: E402
from experiments.common.state import make_schedule  # noqa: E402
from experiments.qm9.benchmark_figures import synthetic_batch  # noqa: E402
from experiments.qm9.model import initial_state  # noqa: E402
from experiments.qm9.train import make_loss_fn  # noqa: E402
from symdiff_jax.train import Checkpointer, sharding  # noqa: E402
from symdiff_jax.train.state import init_train_state  # noqa: E402
from symdiff_jax.train.step import make_train_step  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = 8
STEPS = 2
TOL = 1e-5
MODES = ("replicated", "fsdp")


def setup():
    """`(config, graphdef, state0, optimizer, loss_fn, host_batches)`, identical everywhere.

    AMSGrad with eps = 1e-3 (see tests/train/test_sharding.py): near-zero gradients
    would otherwise turn summation-order noise into O(lr) parameter differences.
    """
    config = configs.get_config("qm9_dit", "smoke")
    graphdef, state, _ = initial_state(config, jax.random.key(0))
    optimizer = optax.amsgrad(1e-3, eps=1e-3)
    state = init_train_state(state.params, optimizer)
    loss_fn = make_loss_fn(config, make_schedule(config.diffusion))
    batches = [synthetic_batch(config, BATCH, seed=s) for s in range(STEPS)]
    return config, graphdef, state, optimizer, loss_fn, batches


def flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(tree))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def worker(port: int, process_id: int, out_dir: str) -> None:
    from experiments.common import runtime

    assert sharding.initialize_distributed(f"localhost:{port}", 2, process_id)
    runtime.enable_compilation_cache()
    jax.config.update("jax_disable_most_optimizations", True)  # compile time; see test file
    mesh = sharding.make_mesh()
    config, graphdef, state0, optimizer, loss_fn, host_batches = setup()
    kw = dict(ema_decay=config.optim.ema_decay, ema_warmup=config.optim.ema_warmup)
    key = sharding.replicate(jax.random.key(7), mesh)
    result = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
    }
    for mode in MODES:
        shardings = sharding.state_shardings(state0, mesh, fsdp=mode == "fsdp")
        state = sharding.place_state(jax.tree.map(jax.numpy.copy, state0), shardings)
        step = sharding.make_sharded_train_step(graphdef, loss_fn, optimizer, mesh, shardings, **kw)
        losses, own_rows = [], []
        for host in host_batches:
            batch = sharding.shard_batch(host, mesh)
            local = batch["positions"].addressable_shards
            own_rows.append(
                all(np.array_equal(np.asarray(s.data), host["positions"][s.index]) for s in local)
                and sum(s.data.shape[0] for s in local) == BATCH // 2
            )
            state, metrics = step(state, batch, key)
            losses.append(float(jax.device_get(metrics["loss"])))
        result[mode] = {"losses": losses, "own_rows": own_rows}
        final = flat(sharding.host_local(state))
        if process_id == 0:
            np.savez(os.path.join(out_dir, f"{mode}.npz"), **final)
        if mode == "fsdp":
            with Checkpointer(os.path.join(out_dir, "ckpt"), best_metric=None) as ckpt:
                ckpt.save(STEPS, state)
    with open(os.path.join(out_dir, f"result_{process_id}.json"), "w") as f:
        json.dump(result, f)


# ----------------------------------------------------------------------------- tests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts both workers, computes the 1-process reference meanwhile, joins them."""
    out = tmp_path_factory.mktemp("distributed")
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "device_count" not in f)
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(port), str(i), str(out)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        config, graphdef, state, optimizer, loss_fn, batches = setup()
        kw = dict(ema_decay=config.optim.ema_decay, ema_warmup=config.optim.ema_warmup)
        step = make_train_step(graphdef, loss_fn, optimizer, donate=False, **kw)
        ref_losses = []
        for host in batches:
            state, metrics = step(state, jax.tree.map(jax.numpy.asarray, host), jax.random.key(7))
            ref_losses.append(float(metrics["loss"]))
        logs = [p.communicate(timeout=540)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    results = []
    for i in range(2):
        with open(out / f"result_{i}.json") as f:
            results.append(json.load(f))
    return out, results, ref_losses, flat(state)


def test_two_processes_form_one_mesh(runs):
    _, results, _, _ = runs
    for i, r in enumerate(results):
        assert (r["process_index"], r["process_count"]) == (i, 2)
        assert (r["devices"], r["local_devices"]) == (2, 1)


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_give_the_one_process_loss(runs, mode):
    out, results, ref_losses, ref_state = runs
    for r in results:  # both processes see the same (global) loss
        np.testing.assert_allclose(r[mode]["losses"], ref_losses, rtol=TOL, atol=TOL)
        assert all(r[mode]["own_rows"])  # each transferred only its half of the batch
    got = dict(np.load(out / f"{mode}.npz"))
    assert sorted(got) == sorted(ref_state)
    worst = max(float(np.max(np.abs(got[k] - ref_state[k]))) for k in ref_state)
    assert worst < TOL, worst


def test_collective_checkpoint_restores_in_one_process(runs):
    out, _, _, _ = runs
    _, _, state, _, _, _ = setup()
    target = jax.eval_shape(lambda s: s, state)
    with Checkpointer(out / "ckpt", best_metric=None) as ckpt:
        restored = flat(ckpt.restore(target))
    want = dict(np.load(out / "fsdp.npz"))
    assert sorted(restored) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(restored[k], want[k], err_msg=k)


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
