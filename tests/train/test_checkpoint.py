"""Tests of symdiff_jax.train.checkpoint: exact round trips, retention, errors, shardings."""

import hashlib
import math
import os
import subprocess
import sys
import textwrap
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from symdiff_jax.train.checkpoint import Checkpointer, CheckpointError
from symdiff_jax.train.manifest import MANIFEST_FILE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _TrainState(NamedTuple):
    step: jax.Array
    params: Any
    opt_state: Any
    extras: dict


def _make_state(seed: int) -> _TrainState:
    """A train-state-like pytree: nnx.State, AdamW state after one update, odd leaves."""
    model = nnx.Linear(3, 4, rngs=nnx.Rngs(seed))
    params = nnx.state(model, nnx.Param)
    optimizer = optax.adamw(1e-3, weight_decay=1e-2)
    opt_state = optimizer.init(params)
    grads = jax.tree.map(lambda p: jnp.sin(p + seed), params)
    _, opt_state = optimizer.update(grads, opt_state, params)
    rng = np.random.default_rng(seed)
    f32 = rng.standard_normal((64, 64)).astype(np.float32)
    # Values that an `==` comparison cannot tell apart or that a cast would change.
    f32[0, :5] = [-0.0, np.nan, np.inf, -np.inf, np.float32(1e-45)]
    extras = {
        "f32": jnp.asarray(f32),
        "i32": jnp.asarray(rng.integers(-(2**31), 2**31 - 1, size=(7,), dtype=np.int64), jnp.int32),
        "key_data": jax.random.key_data(jax.random.key(seed)),
        "key": jax.random.split(jax.random.key(seed + 1), 3),
    }
    return _TrainState(jnp.asarray(seed, jnp.int32), params, opt_state, extras)


def _abstract(state):
    return jax.eval_shape(lambda: state)


def _raw(leaf) -> tuple[str, tuple, bytes]:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
        kind = "key"
    else:
        kind = "array"
    array = np.asarray(leaf)
    return kind, (array.dtype.str, array.shape), array.tobytes()


def _assert_bit_identical(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert _raw(a) == _raw(e)


def _checksums(directory) -> dict[str, str]:
    """sha256 of every file and the set of folders under `directory`."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), directory) + "/"] = "dir"
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, directory)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _small(value) -> dict:
    return {"w": jnp.full((2, 3), value, jnp.float32), "n": jnp.asarray(int(value), jnp.int32)}


# ---------------------------------------------------------------------------- round trips


@pytest.mark.allow_nonfinite  # the state holds NaN and +-Inf on purpose
def test_roundtrip_is_bit_identical(tmp_path):
    """float32 (with -0, NaN, +-Inf, a denormal), int32, key data, typed keys, AdamW, nnx.State."""
    state = _make_state(0)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        assert ckpt.save(5, state, allow_non_finite=True)
        restored = ckpt.restore(_abstract(state))
    _assert_bit_identical(restored, state)
    assert isinstance(restored, _TrainState)
    assert isinstance(restored.params, nnx.State)
    assert jax.tree.structure(restored.opt_state) == jax.tree.structure(state.opt_state)
    assert jax.dtypes.issubdtype(restored.extras["key"].dtype, jax.dtypes.prng_key)


@pytest.mark.allow_nonfinite  # the state holds NaN and +-Inf on purpose
def test_restore_into_concrete_target_replaces_its_values(tmp_path):
    """A concrete target (other values, same structure) only supplies structure/placement."""
    state, other = _make_state(1), _make_state(2)
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, state, allow_non_finite=True)
    _assert_bit_identical(ckpt.restore(other), state)


def test_latest_and_explicit_steps(tmp_path):
    ckpt = Checkpointer(tmp_path, max_to_keep=5, best_metric=None)
    for step in (10, 20, 30):
        assert ckpt.save(step, _small(step))
    assert ckpt.all_steps() == [10, 20, 30]
    assert ckpt.latest_step() == 30
    assert int(ckpt.restore(_small(0))["n"]) == 30
    assert int(ckpt.restore(_small(0), step=20)["n"]) == 20
    np.testing.assert_array_equal(ckpt.restore(_small(0), step=10)["w"], np.full((2, 3), 10.0))


def test_numpy_and_python_scalar_leaves(tmp_path):
    state = {"np": np.linspace(0, 1, 5), "py_float": 2.5, "py_int": 7}
    ckpt = Checkpointer(tmp_path)
    ckpt.save(0, state)
    out = ckpt.restore({"np": np.zeros(5), "py_float": 0.0, "py_int": 0})
    assert isinstance(out["np"], np.ndarray) and out["np"].tobytes() == state["np"].tobytes()
    assert out["py_float"] == 2.5 and out["py_int"] == 7


# ---------------------------------------------------------------------------- retention


def _expected_best(history, mode):
    """Independent reference: the step with the best finite metric (the later on a tie)."""
    best = None
    for step, value in history:
        if value is None or not math.isfinite(value):
            continue
        if best is None or (value <= best[1] if mode == "min" else value >= best[1]):
            best = (step, value)
    return None if best is None else best[0]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_keeps_latest_n_plus_best(tmp_path, mode):
    """After every save: on disk = the last 2 steps plus the best finite one."""
    values = [5.0, 1.0, math.nan, 3.0, None, math.inf, -math.inf, 4.0, 1.0, 6.0, 2.0]
    ckpt = Checkpointer(tmp_path, max_to_keep=2, best_metric="val/nll", best_mode=mode)
    history = []
    for step, value in enumerate(values, start=1):
        metrics = {"train/loss": 0.5} if value is None else {"val/nll": value, "train/loss": 0.5}
        assert ckpt.save(step, _small(step), metrics=metrics)
        history.append((step, value))
        best = _expected_best(history, mode)
        expected = sorted({s for s, _ in history[-2:]} | ({best} if best is not None else set()))
        assert ckpt.all_steps() == expected, (step, mode)
        assert ckpt.best_step() == best
    best = _expected_best(history, mode)
    assert best == (9 if mode == "min" else 10)
    assert int(ckpt.restore(_small(0), best=True)["n"]) == best
    assert ckpt.metrics(best)["val/nll"] == values[best - 1]


def test_best_survives_reopening(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=1) as ckpt:
        ckpt.save(1, _small(1), metrics={"val/nll": 0.5})
        ckpt.save(2, _small(2), metrics={"val/nll": 0.9})
    with Checkpointer(tmp_path, max_to_keep=1) as ckpt:
        assert ckpt.best_step() == 1
        ckpt.save(3, _small(3), metrics={"val/nll": 0.7})
        ckpt.save(4, _small(4), metrics={"val/nll": 0.8})
        assert ckpt.all_steps() == [1, 4]
        assert int(ckpt.restore(_small(0), best=True)["n"]) == 1
        ckpt.save(5, _small(5), metrics={"val/nll": 0.1})
        assert ckpt.all_steps() == [5]
        assert ckpt.best_step() == 5


def test_non_finite_metric_is_never_best(tmp_path):
    ckpt = Checkpointer(tmp_path, max_to_keep=1)
    ckpt.save(1, _small(1), metrics={"val/nll": math.nan})
    ckpt.save(2, _small(2), metrics={"val/nll": -math.inf})
    ckpt.save(3, _small(3), metrics={"other": 0.0})
    assert ckpt.best_step() is None
    assert ckpt.all_steps() == [3]
    assert ckpt.metrics(2) is None and ckpt.metrics(3) == {"other": 0.0}
    with pytest.raises(CheckpointError, match="No best checkpoint"):
        ckpt.restore(_small(0), best=True)


def test_best_metric_none_keeps_only_latest(tmp_path):
    ckpt = Checkpointer(tmp_path, max_to_keep=2, best_metric=None)
    for step, value in enumerate([0.1, 5.0, 6.0], start=1):
        ckpt.save(step, _small(step), metrics={"val/nll": value})
    assert ckpt.all_steps() == [2, 3]
    assert ckpt.best_step() is None


@pytest.mark.allow_nonfinite  # the state holds NaN and +-Inf on purpose
def test_async_save(tmp_path):
    state = _make_state(3)
    with Checkpointer(tmp_path, async_save=True) as ckpt:
        for step in range(3):
            assert ckpt.save(step, state, metrics={"val/nll": 1.0 - step}, allow_non_finite=True)
        _assert_bit_identical(ckpt.restore(_abstract(state)), state)  # waits for the writes
        assert ckpt.all_steps() == [0, 1, 2]
        assert ckpt.best_step() == 2
        assert [ckpt.verify(step) for step in range(3)] == [[], [], []]  # manifests written
    with Checkpointer(tmp_path) as reopened:
        _assert_bit_identical(reopened.restore(_abstract(state), best=True), state)


# ---------------------------------------------------------------------------- saving rules


def test_existing_or_older_step_is_skipped_not_overwritten(tmp_path, caplog):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(3, _small(3), metrics={"val/nll": 1.0})
    ckpt.save(5, _small(5), metrics={"val/nll": 2.0})
    before = _checksums(tmp_path)
    with caplog.at_level("WARNING"):
        assert ckpt.save(5, _small(99), metrics={"val/nll": 0.0}) is False
        assert ckpt.save(4, _small(99), metrics={"val/nll": 0.0}) is False
    assert "already exists" in caplog.text and "older than the latest" in caplog.text
    assert _checksums(tmp_path) == before
    assert int(ckpt.restore(_small(0))["n"]) == 5
    assert ckpt.best_step() == 3


@pytest.mark.parametrize(
    "step, metrics, error",
    [(-1, None, ValueError), (1.0, None, ValueError), (1, {"a": np.ones(2)}, ValueError)],
)
def test_save_rejects_bad_arguments(tmp_path, step, metrics, error):
    with pytest.raises(error):
        Checkpointer(tmp_path).save(step, _small(1), metrics=metrics)


def test_constructor_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="max_to_keep"):
        Checkpointer(tmp_path, max_to_keep=0)
    with pytest.raises(ValueError, match="best_mode"):
        Checkpointer(tmp_path, best_mode="lowest")


# ---------------------------------------------------------------------------- errors


def test_restore_from_missing_directory(tmp_path):
    missing = tmp_path / "no_such_run" / "checkpoints"
    ckpt = Checkpointer(missing)
    assert ckpt.all_steps() == [] and ckpt.latest_step() is None and ckpt.best_step() is None
    with pytest.raises(CheckpointError, match="does not exist") as info:
        ckpt.restore(_small(0))
    assert str(missing) in str(info.value)
    assert not missing.exists()  # reading never creates the folder


def test_restore_from_empty_directory(tmp_path):
    with pytest.raises(CheckpointError, match="has no steps") as info:
        Checkpointer(tmp_path).restore(_small(0))
    assert str(tmp_path) in str(info.value)
    assert os.listdir(tmp_path) == []


def test_restore_unknown_step_lists_available(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, _small(1))
    ckpt.save(2, _small(2))
    with pytest.raises(CheckpointError, match=r"step 7 .*available steps: \[1, 2\]"):
        ckpt.restore(_small(0), step=7)
    ckpt.save(3, _small(3), metrics={"val/nll": 1.0})
    with pytest.raises(ValueError, match="best step"):
        ckpt.restore(_small(0), step=2, best=True)


def _files(directory) -> list[str]:
    """Every file under `directory` except the manifest, found by listing it."""
    return sorted(
        os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs if f != MANIFEST_FILE
    )


def _flip_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


_CORRUPTIONS = {
    "flipped byte in the largest file": lambda d: _flip_byte(max(_files(d), key=os.path.getsize)),
    "truncated largest file": lambda d: _truncate(max(_files(d), key=os.path.getsize)),
    "deleted smallest file": lambda d: os.remove(min(_files(d), key=os.path.getsize)),
}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("corruption", sorted(_CORRUPTIONS))
def test_damaged_step_is_named_and_the_previous_one_restored(tmp_path, corruption, caplog):
    state = {"w": jnp.asarray(np.random.default_rng(1).standard_normal((64, 64)), jnp.float32)}
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, state)
    ckpt.save(2, jax.tree.map(lambda x: x + 1, state))
    assert ckpt.verify(1) == [] and ckpt.verify(2) == []
    _CORRUPTIONS[corruption](tmp_path / "2")
    assert ckpt.verify(2)
    before = _checksums(tmp_path)
    fresh = Checkpointer(tmp_path)  # as after a crash: a new process opens the folder
    with pytest.raises(CheckpointError) as info:
        fresh.restore(_abstract(state), step=2)
    message = str(info.value)
    assert str(tmp_path / "2") in message and "step 2" in message
    assert "restore(step=1)" in message and "delete" in message
    assert _checksums(tmp_path) == before
    with caplog.at_level("WARNING"):
        _assert_bit_identical(fresh.restore(_abstract(state)), state)
    assert str(tmp_path / "2") in caplog.text and "Falling back" in caplog.text
    assert _checksums(tmp_path) == before


def test_every_step_damaged_is_a_clear_error(tmp_path):
    ckpt = Checkpointer(tmp_path)
    for step in (1, 2):
        ckpt.save(step, _small(step))
        _flip_byte(max(_files(tmp_path / str(step)), key=os.path.getsize))
    before = _checksums(tmp_path)
    expected = r"Every checkpoint .* is damaged \(steps \[2, 1\]\)"
    with pytest.raises(CheckpointError, match=expected):
        Checkpointer(tmp_path).restore(_small(0))
    assert _checksums(tmp_path) == before


def test_step_without_manifest_restores_with_a_warning(tmp_path, caplog):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, _small(1))
    os.remove(tmp_path / "1" / MANIFEST_FILE)
    assert ckpt.verify(1) is None
    with caplog.at_level("WARNING"):
        assert int(Checkpointer(tmp_path).restore(_small(0))["n"]) == 1
    assert "no content manifest" in caplog.text


@pytest.mark.allow_nonfinite
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_state_is_refused(tmp_path, bad):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, _small(1))
    before = _checksums(tmp_path)
    state = {"a": {"w": jnp.ones(3).at[1].set(bad)}, "n": jnp.zeros((), jnp.int32)}
    expected = r"Refusing to save step 2 .*NaN or Inf .*\['a'\]\['w'\]"
    with pytest.raises(CheckpointError, match=expected):
        ckpt.save(2, state)
    assert _checksums(tmp_path) == before and ckpt.all_steps() == [1]
    assert ckpt.save(2, state, allow_non_finite=True)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda t: {k: v for k, v in t.items() if k != "b"}, ["not in the target", "b"]),
        (lambda t: {**t, "extra": jnp.zeros(2)}, ["not in the checkpoint", "extra"]),
        (
            lambda t: {**t, "a": {"x": jnp.zeros((3, 5))}},
            ["a/x: checkpoint (3, 4) float32, target (3, 5)"],
        ),
        (
            lambda t: {**t, "b": jnp.zeros(2, jnp.float32)},
            ["b: checkpoint (2,) int32, target (2,) float32"],
        ),
    ],
    ids=["missing", "extra", "shape", "dtype"],
)
def test_structure_mismatch_lists_differences(tmp_path, change, expected):
    state = {"a": {"x": jnp.ones((3, 4))}, "b": jnp.arange(2, dtype=jnp.int32)}
    ckpt = Checkpointer(tmp_path)
    ckpt.save(4, state)
    before = _checksums(tmp_path)
    with pytest.raises(CheckpointError, match="does not match checkpoint step 4") as info:
        ckpt.restore(change(state))
    for text in expected:
        assert text in str(info.value)
    assert str(tmp_path / "4") in str(info.value)
    assert _checksums(tmp_path) == before
    _assert_bit_identical(ckpt.restore(state), state)  # the matching target still works


def test_unreadable_metrics_file_is_ignored_with_its_step(tmp_path, caplog):
    """Orbax reads every step's metrics when it opens: a damaged one is named and left out."""
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, _small(1), metrics={"val/nll": 1.0})
        ckpt.save(2, _small(2), metrics={"val/nll": 0.5})
    (metrics_file,) = [f for f in _files(tmp_path / "2") if f.endswith("metrics")]
    with open(metrics_file, "w") as f:
        f.write("{not json")
    before = _checksums(tmp_path)
    with caplog.at_level("WARNING"):
        fresh = Checkpointer(tmp_path)
        assert int(fresh.restore(_small(0))["n"]) == 1
    expected = f"differs from their manifest) are ignored: ['{tmp_path / '2'}']"
    assert expected in caplog.text
    assert fresh.all_steps() == [1, 2] and fresh.best_step() == 1 and fresh.metrics(2) is None
    assert fresh.save(2, _small(99)) is False  # the damaged directory is never overwritten
    assert _checksums(tmp_path) == before
    (metrics_file,) = [f for f in _files(tmp_path / "1") if f.endswith("metrics")]
    with open(metrics_file, "w") as f:
        f.write("{not json")
    expected = r"Every checkpoint .* is damaged \(steps \[2, 1\]\)"
    with pytest.raises(CheckpointError, match=expected):
        Checkpointer(tmp_path).restore(_small(0))


# ---------------------------------------------------------------------------- shardings

_TWO_DEVICE_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from symdiff_jax.train import Checkpointer

    out_dir, in_dir = sys.argv[1], sys.argv[2]
    assert jax.device_count() == 2, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    rng = np.random.default_rng(0)
    params, batch = rng.standard_normal((3, 4)).astype(np.float32), np.arange(16, dtype=np.int32)
    batch = batch.reshape(8, 2)

    state = {"params": jax.device_put(params, replicated),
             "batch": jax.device_put(batch, batch_sharding)}
    assert [s.data.shape for s in state["batch"].addressable_shards] == [(4, 2), (4, 2)]
    with Checkpointer(out_dir) as ckpt:
        ckpt.save(1, state)

    target = {"params": jax.ShapeDtypeStruct((3, 4), np.float32, sharding=replicated),
              "batch": jax.ShapeDtypeStruct((8, 2), np.int32, sharding=batch_sharding)}
    restored = Checkpointer(in_dir).restore(target)
    assert restored["batch"].sharding == batch_sharding, restored["batch"].sharding
    assert restored["params"].sharding == replicated, restored["params"].sharding
    shards = sorted(restored["batch"].addressable_shards, key=lambda s: s.device.id)
    assert [s.data.shape for s in shards] == [(4, 2), (4, 2)]
    np.testing.assert_array_equal(np.asarray(shards[1].data), batch[4:] + 1)
    assert np.asarray(restored["params"]).tobytes() == (params + 1).tobytes()
    print("TWO-DEVICE-OK")
    """
)


def test_restore_across_device_counts(tmp_path):
    """1 device -> 2-device mesh (batch sharded, params replicated) and back, bit-exact."""
    rng = np.random.default_rng(0)
    params, batch = rng.standard_normal((3, 4)).astype(np.float32), np.arange(16, dtype=np.int32)
    batch = batch.reshape(8, 2)
    device = jax.devices()[0]
    with Checkpointer(tmp_path / "one_device") as ckpt:
        ckpt.save(
            1,
            {
                "params": jax.device_put(params + 1, device),
                "batch": jax.device_put(batch + 1, device),
            },
        )

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, "--xla_force_host_platform_device_count=2"])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _TWO_DEVICE_SCRIPT,
            str(tmp_path / "two_devices"),
            str(tmp_path / "one_device"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=env,
    )
    assert result.returncode == 0 and "TWO-DEVICE-OK" in result.stdout, result.stderr[-3000:]

    single = jax.sharding.SingleDeviceSharding(device)
    target = {
        "params": jax.ShapeDtypeStruct((3, 4), jnp.float32, sharding=single),
        "batch": jax.ShapeDtypeStruct((8, 2), jnp.int32, sharding=single),
    }
    restored = Checkpointer(tmp_path / "two_devices").restore(target)
    assert restored["batch"].sharding == single and restored["params"].sharding == single
    assert np.asarray(restored["params"]).tobytes() == params.tobytes()
    np.testing.assert_array_equal(np.asarray(restored["batch"]), batch)
