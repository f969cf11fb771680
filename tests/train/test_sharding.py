"""Data parallelism on faked CPU devices: sharded = single-device, checkpoints move layouts.

XLA's device count is fixed when JAX starts, so the 2-device half runs in a subprocess
(this file, run as a script with `--xla_force_host_platform_device_count=2`); the
1-device half runs here. Model: `configs/qm9_dit.py:smoke` (and `qm9_symdiff.py:smoke`
for the replicated step), on a fixed synthetic batch of 8 molecules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

if __name__ == "__main__":  # the 2-device worker: XLA flags before JAX is imported
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    )
    os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import configs  # noqa: E402
from experiments.common.state import make_schedule  # noqa: E402
from experiments.qm9 import model as qm9_model  # noqa: E402
from experiments.qm9.benchmark_figures import synthetic_batch  # noqa: E402
from experiments.qm9.train import make_loss_fn  # noqa: E402
from symdiff_jax.train import Checkpointer, sharding  # noqa: E402
from symdiff_jax.train.state import init_train_state  # noqa: E402
from symdiff_jax.train.step import make_train_step  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = 8
STEPS = 3
TOL = 1e-5


def smoke_config(variant: str):
    config = configs.get_config(f"qm9_{variant}", "smoke")
    config.batch_size = BATCH
    return config


def flat(tree) -> dict[str, np.ndarray]:
    """Leaves by key path, as host numpy arrays."""
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(tree))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def make_optimizer():
    """AMSGrad as configured, but with eps = 1e-3.

    Symmetrisation and tiny models leave some gradients at ~1e-9 (e.g. an output bias
    averaged over rotations), where `m / (sqrt(v) + 1e-8)` turns summation-order noise
    into O(lr) updates; a larger eps keeps the update a smooth function of the gradient.
    """
    return optax.amsgrad(1e-3, eps=1e-3)


def abstract_state(config):
    """The TrainState structure of the config's model with `make_optimizer()`."""
    _, params = qm9_model.abstract_state(config)
    return jax.eval_shape(lambda p: init_train_state(p, make_optimizer()), params.params)


def random_state(config, seed: int):
    """A TrainState of `abstract_state(config)` filled with random values (1 device)."""
    abstract = abstract_state(config)
    rng = np.random.default_rng(seed)

    def fill(leaf):
        if np.issubdtype(leaf.dtype, np.integer):
            return jax.numpy.asarray(rng.integers(0, 1000, leaf.shape, dtype=leaf.dtype))
        return jax.numpy.asarray(rng.standard_normal(leaf.shape).astype(leaf.dtype))

    return jax.tree.map(fill, abstract)


# ----------------------------------------------------------------------------- worker


def run_steps(step_fn, state, batches, key):
    losses = []
    for batch in batches:
        state, metrics = step_fn(state, batch, key)
        losses.append(float(jax.device_get(metrics["loss"])))
    return state, losses


def worker(out_dir: str) -> None:
    """Everything that needs 2 devices; writes `result.json` and a checkpoint into out_dir."""
    from experiments.common import runtime

    runtime.enable_compilation_cache()
    # XLA's optimisation passes dominate the compile time of these tiny steps; the
    # partitioner still runs, and the reference and the sharded step share the setting.
    jax.config.update("jax_disable_most_optimizations", True)
    assert jax.device_count() == 2, jax.devices()
    result: dict = {}
    mesh = sharding.make_mesh()
    host_batches = [synthetic_batch(smoke_config("dit"), BATCH, seed=s) for s in range(STEPS)]

    for variant, fsdp_options in (("dit", (False, True)), ("symdiff", (False,))):
        start = time.perf_counter()
        config = smoke_config(variant)
        schedule = make_schedule(config.diffusion)
        loss_fn = make_loss_fn(config, schedule)
        key = jax.random.key(7)
        graphdef, state0, optimizer = qm9_model.initial_state(config, jax.random.key(0))
        optimizer = make_optimizer()
        state0 = init_train_state(state0.params, optimizer)
        kw = dict(ema_decay=config.optim.ema_decay, ema_warmup=config.optim.ema_warmup)
        # The reference: everything on device 0, plain jit.
        single = make_train_step(graphdef, loss_fn, optimizer, donate=False, **kw)
        batches = [jax.tree.map(jax.numpy.asarray, b) for b in host_batches]
        ref_state, ref_losses = run_steps(single, state0, batches, key)
        ref = flat(ref_state)
        result[f"{variant}_seconds_single"] = time.perf_counter() - start
        for fsdp in fsdp_options:
            start = time.perf_counter()
            name = f"{variant}_{'fsdp' if fsdp else 'replicated'}"
            shardings = sharding.state_shardings(state0, mesh, fsdp=fsdp)
            state = sharding.place_state(jax.tree.map(jax.numpy.copy, state0), shardings)
            step = sharding.make_sharded_train_step(
                graphdef, loss_fn, optimizer, mesh, shardings, **kw
            )
            sharded = [sharding.shard_batch(b, mesh) for b in host_batches]
            rkey = sharding.replicate(key, mesh)
            state, losses = run_steps(step, state, sharded, rkey)
            got = flat(state)
            specs = [s.spec for s in jax.tree.leaves(shardings)]
            result[f"{name}_seconds"] = time.perf_counter() - start
            result[name] = {
                "losses": losses,
                "ref_losses": ref_losses,
                "max_state_diff": max(float(np.max(np.abs(got[k] - ref[k]))) for k in ref),
                "same_keys": sorted(got) == sorted(ref),
                "num_split_leaves": sum(s != P() for s in specs),
                "num_leaves": len(specs),
                "param_devices": sorted(
                    {len(x.sharding.device_set) for x in jax.tree.leaves(state.params)}
                ),
                "batch_shard_rows": sorted(
                    {s.data.shape[0] for s in sharded[0]["positions"].addressable_shards}
                ),
                "params_fully_replicated": all(
                    x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params)
                ),
            }
            if variant == "dit" and fsdp:
                # 2 devices -> disk: the trained FSDP state and its values.
                with Checkpointer(os.path.join(out_dir, "from_two"), best_metric=None) as c:
                    c.save(STEPS, state)
                np.savez(os.path.join(out_dir, "from_two.npz"), **flat(state))
                # disk (written by the 1-device parent) -> 2 devices, FSDP layout.
                abstract = abstract_state(config)
                target = jax.tree.map(
                    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                    abstract,
                    shardings,
                )
                with Checkpointer(os.path.join(out_dir, "from_one"), best_metric=None) as c:
                    restored = c.restore(target)
                want = dict(np.load(os.path.join(out_dir, "from_one.npz")))
                got_r = flat(restored)
                result["restore_on_two"] = {
                    "bit_exact": sorted(got_r) == sorted(want)
                    and all(np.array_equal(got_r[k], want[k]) for k in want),
                    "shardings_match": all(
                        r.sharding == s
                        for r, s in zip(
                            jax.tree.leaves(restored), jax.tree.leaves(shardings), strict=True
                        )
                    ),
                }

    try:
        sharding.shard_batch(synthetic_batch(smoke_config("dit"), 7), mesh)
        result["odd_batch_error"] = ""
    except ValueError as e:
        result["odd_batch_error"] = str(e)
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(result, f)


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    """Runs the 2-device worker once (after writing the 1-device checkpoint it restores)."""
    out = tmp_path_factory.mktemp("sharding")
    state = random_state(smoke_config("dit"), seed=3)
    with Checkpointer(out / "from_one", best_metric=None) as ckpt:
        ckpt.save(5, state)
    np.savez(out / "from_one.npz", **flat(state))
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out / "result.json") as f:
        return out, json.load(f)


@pytest.mark.parametrize("name", ["dit_replicated", "dit_fsdp", "symdiff_replicated"])
def test_sharded_step_matches_single_device(two_devices, name):
    """Loss of every step and the whole state after 3 AdamW steps agree to 1e-5."""
    r = two_devices[1][name]
    assert len(r["losses"]) == STEPS
    np.testing.assert_allclose(r["losses"], r["ref_losses"], rtol=TOL, atol=TOL)
    assert r["same_keys"]
    assert r["max_state_diff"] < TOL, r["max_state_diff"]
    assert r["batch_shard_rows"] == [BATCH // 2]  # each device holds half the batch
    assert r["param_devices"] == [2]


def test_fsdp_splits_large_leaves_replicated_does_not(two_devices):
    res = two_devices[1]
    assert res["dit_replicated"]["num_split_leaves"] == 0
    assert res["dit_replicated"]["params_fully_replicated"]
    fsdp = res["dit_fsdp"]
    assert 0 < fsdp["num_split_leaves"] < fsdp["num_leaves"]
    assert not fsdp["params_fully_replicated"]


def test_checkpoint_from_one_device_restores_on_two(two_devices):
    r = two_devices[1]["restore_on_two"]
    assert r["bit_exact"]
    assert r["shardings_match"]


def test_checkpoint_from_two_devices_restores_on_one(two_devices):
    out = two_devices[0]
    abstract = abstract_state(smoke_config("dit"))
    with Checkpointer(out / "from_two", best_metric=None) as ckpt:
        restored = ckpt.restore(abstract)
    want = dict(np.load(out / "from_two.npz"))
    got = flat(restored)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert {len(x.sharding.device_set) for x in jax.tree.leaves(restored)} == {1}


def test_batch_not_divisible_by_devices_is_a_clear_error(two_devices):
    message = two_devices[1]["odd_batch_error"]
    assert "7" in message and "2 devices" in message and "multiple of 2" in message


# ----------------------------------------------------------------------------- 1 device


def test_fsdp_spec_picks_largest_divisible_axis():
    assert sharding.fsdp_spec((64, 256), 2) == P(None, "data")
    assert sharding.fsdp_spec((256, 64), 2) == P("data")
    assert sharding.fsdp_spec((96, 96), 2) == P("data")  # ties: the first axis
    assert sharding.fsdp_spec((33, 64), 4) == P(None, "data")  # 33 does not divide
    assert sharding.fsdp_spec((33, 35), 2, min_size=1) == P()  # nothing divides
    assert sharding.fsdp_spec((256,), 2) == P()  # below min_size: replicated
    assert sharding.fsdp_spec((), 2, min_size=0) == P()
    assert sharding.fsdp_spec((64, 256), 1) == P()


def test_process_batch_slice_blocks_tile_the_batch():
    batch = {"x": np.arange(12).reshape(6, 2), "m": np.arange(6)}
    parts = [sharding.process_batch_slice(batch, i, 3) for i in range(3)]
    np.testing.assert_array_equal(np.concatenate([p["x"] for p in parts]), batch["x"])
    np.testing.assert_array_equal(parts[1]["m"], [2, 3])
    with pytest.raises(ValueError, match="not divisible by the number of processes 4"):
        sharding.process_batch_slice(batch, 0, 4)
    with pytest.raises(ValueError, match="process_index"):
        sharding.process_batch_slice(batch, 3, 3)
    with pytest.raises(ValueError, match="same leading batch axis"):
        sharding.process_batch_slice({"a": np.zeros(4), "b": np.zeros(3)}, 0, 1)


def test_make_mesh_and_shardings_on_one_device():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    assert sharding.batch_sharding(mesh).spec == P("data")
    assert sharding.replicated(mesh).spec == P()
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        sharding.make_mesh(jax.device_count() + 1)
    batch = sharding.shard_batch({"x": np.ones((3, 2))}, mesh)
    assert batch["x"].sharding == sharding.batch_sharding(mesh)
    assert sharding.host_local(batch) is batch


def test_initialize_distributed_arguments():
    assert sharding.initialize_distributed() is False
    assert sharding.initialize_distributed(None, 1, 0) is False
    with pytest.raises(ValueError, match="needs all of"):
        sharding.initialize_distributed("localhost:1234", 2)
    with pytest.raises(ValueError, match="host:port"):
        sharding.initialize_distributed("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
        sharding.initialize_distributed("localhost:1234", 2, 2)


if __name__ == "__main__":
    worker(sys.argv[1])
