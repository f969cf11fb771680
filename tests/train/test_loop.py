"""The train step and loop on a tiny regression: exact resume, EMA, NaN guard, freezing."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.train import (
    Checkpointer,
    MetricWriter,
    NonFiniteLossError,
    fit,
    init_train_state,
    make_optimizer,
    make_train_step,
    read_metrics_jsonl,
    split_model,
)
from symdiff_jax.train.state import ema_decay_at


class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(3, 1, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)[..., 0]


def loss_fn(model, batch, key):
    noise = 0.01 * jax.random.normal(key, batch["y"].shape)
    return {"loss": (model(batch["x"]) - batch["y"] - noise) ** 2}


def batches(start_step, poison_step=None):
    """Batch of step s (1-based) is a pure function of s, so resuming replays the stream."""
    step = start_step
    while True:
        step += 1
        rng = np.random.default_rng(step)
        x = rng.normal(size=(8, 3)).astype(np.float32)
        y = x @ np.array([1.0, -2.0, 0.5], np.float32)
        if step == poison_step:
            y = y * np.nan
        yield {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def setup(seed=0):
    graphdef, params = split_model(Tiny(nnx.Rngs(seed)))
    optimizer = make_optimizer(1e-2, clip_norm=1.0, amsgrad=True)
    state = init_train_state(params, optimizer)
    step = make_train_step(graphdef, loss_fn, optimizer, ema_decay=0.9)
    return state, step


def params_of(state):
    return [
        np.asarray(x) for x in jax.tree.leaves((state.params, state.opt_state, state.ema_params))
    ]


def test_resume_is_bit_exact(tmp_path):
    key = jax.random.key(3)
    state, step = setup()
    straight, last_straight = fit(
        state, step, batches(0), key, num_steps=12, progress=False, log_every=4
    )

    state, step = setup()
    with Checkpointer(str(tmp_path / "ckpt")) as ckpt:
        fit(
            state,
            step,
            batches(0),
            key,
            num_steps=6,
            checkpointer=ckpt,
            progress=False,
            log_every=3,
        )
    fresh, step = setup()
    with Checkpointer(str(tmp_path / "ckpt")) as ckpt:
        restored = ckpt.restore(fresh)
        assert int(restored.step) == 6
        resumed, last_resumed = fit(
            restored, step, batches(6), key, num_steps=12, checkpointer=ckpt, progress=False,
            log_every=3,
        )  # fmt: skip
    assert int(resumed.step) == int(straight.step) == 12
    for a, b in zip(params_of(straight), params_of(resumed), strict=True):
        assert np.array_equal(a, b)
    # The last window (steps 10-12 vs 9-12) differs; the final parameters are what must match.
    assert np.isfinite(last_resumed["train/loss"]) and np.isfinite(last_straight["train/loss"])


def test_training_reduces_the_loss_and_ema_follows():
    state, step = setup()
    key = jax.random.key(0)
    it = batches(0)
    first = float(
        jnp.mean(
            loss_fn(
                nnx.merge(split_model(Tiny(nnx.Rngs(0)))[0], state.params), next(batches(0)), key
            )["loss"]
        )
    )
    state, last = fit(state, step, it, key, num_steps=300, progress=False, log_every=50)
    assert last["train/loss"] < 0.05 * first
    w = np.asarray(state.params["linear"]["kernel"][...]).ravel()
    w_ema = np.asarray(state.ema_params["linear"]["kernel"][...]).ravel()
    assert np.allclose(w, [1.0, -2.0, 0.5], atol=0.05)
    assert np.allclose(w_ema, w, atol=0.05)


def test_ema_decay_warmup():
    assert float(ema_decay_at(0, 0.9999)) == pytest.approx(0.1)
    assert float(ema_decay_at(10**7, 0.9999)) == pytest.approx(0.9999)
    assert float(ema_decay_at(0, 0.9999, warmup=False)) == pytest.approx(0.9999)


@pytest.mark.allow_nonfinite
def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    state, step = setup()
    key = jax.random.key(1)
    with Checkpointer(str(tmp_path / "ckpt")) as ckpt, MetricWriter(str(tmp_path)) as writer:
        with pytest.raises(NonFiniteLossError, match=r"step 7\b.*step 4"):
            fit(
                state, step, batches(0, poison_step=7), key, num_steps=12, checkpointer=ckpt,
                writer=writer, checkpoint_every=4, log_every=4, progress=False,
            )  # fmt: skip
        assert ckpt.latest_step() == 4
        restored = ckpt.restore(setup()[0])
    assert all(np.all(np.isfinite(x)) for x in params_of(restored))
    logged = read_metrics_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in logged] == [4]


@pytest.mark.allow_nonfinite
def test_nan_step_leaves_the_state_unchanged():
    state, step = setup()
    key = jax.random.key(2)
    before = params_of(state)
    it = batches(6, poison_step=7)
    new, metrics = step(state, next(it), key)
    assert float(metrics["finite"]) == 0.0
    assert int(new.step) == 0
    for a, b in zip(before, params_of(new), strict=True):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.allow_nonfinite
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_gradient_with_a_finite_loss_skips_the_step(bad):
    """The guard looks at the gradients too: a loss of exactly 0 with a NaN/Inf gradient."""

    def poisoned_loss(model, batch, key):
        w = model.linear.kernel[...]
        # The untaken branch of `where` gets a zero cotangent: 0 * poison is NaN for
        # poison = NaN or Inf, while the value is exactly 0.
        loss = jnp.where(False, jnp.sum(w * batch["poison"]), 0.0) + 0.0 * batch["y"]
        return {"loss": loss}

    graphdef, params = split_model(Tiny(nnx.Rngs(0)))
    optimizer = make_optimizer(1e-2, clip_norm=1.0)
    state = init_train_state(params, optimizer)
    step = make_train_step(graphdef, poisoned_loss, optimizer, ema_decay=0.9)
    before = params_of(state)
    batch = {"y": jnp.zeros(8), "poison": jnp.asarray([bad, 1.0, 1.0], jnp.float32)[:, None]}
    new, metrics = step(state, batch, jax.random.key(0))
    assert float(metrics["loss"]) == 0.0 and not np.isfinite(float(metrics["grad_norm"]))
    assert float(metrics["finite"]) == 0.0 and int(new.step) == 0
    for a, b in zip(before, params_of(new), strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    good = {"y": jnp.zeros(8), "poison": jnp.ones((3, 1), jnp.float32)}
    assert float(step(new, good, jax.random.key(0))[1]["finite"]) == 1.0


@pytest.mark.allow_nonfinite
def test_nan_learning_rate_never_reaches_a_checkpoint(tmp_path):
    """A NaN learning rate gives finite losses and gradients but NaN parameters: the run
    stops at the first step and no checkpoint is written."""
    import optax

    graphdef, params = split_model(Tiny(nnx.Rngs(0)))
    optimizer = optax.adam(float("nan"))
    state = init_train_state(params, optimizer)
    step = make_train_step(graphdef, loss_fn, optimizer, ema_decay=0.9)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        with pytest.raises(NonFiniteLossError, match="at step 1 "):
            fit(
                state,
                step,
                batches(0),
                jax.random.key(0),
                num_steps=3,
                checkpointer=ckpt,
                checkpoint_every=1,
                progress=False,
            )
        assert ckpt.all_steps() == []


def test_compile_notice_logs_start_ticks_and_total(caplog):
    import logging as std_logging

    from symdiff_jax.train.loop import compile_notice, example_unit, examples_in

    with caplog.at_level(std_logging.INFO), compile_notice("the step", every_s=0.05):
        time.sleep(0.2)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "compiling the step..."
    assert any(m.startswith("compiling the step... ") and m.endswith(" s") for m in messages[1:-1])
    assert messages[-1].startswith("compiled the step in ")
    batch = {"positions": np.zeros((5, 9, 3)), "mask": np.ones((5, 9))}
    assert (examples_in(batch), example_unit(batch)) == (5, "mol")
    assert (examples_in(np.zeros((7, 2))), example_unit(np.zeros((7, 2)))) == (7, "ex")


@pytest.mark.parametrize("clock, stops_early", [("wall", True), ("cpu", False)])
def test_the_time_budget_runs_on_the_named_clock(clock, stops_early):
    """Steps that sleep spend wall time but almost no CPU time: only the wall budget ends them."""
    state, step = setup()
    step(state, next(batches(0)), jax.random.key(0))  # compiled before the clocks start

    def sleepy_step(state, batch, key):
        time.sleep(0.05)
        return step(state, batch, key)

    state, _ = fit(
        state,
        sleepy_step,
        batches(0),
        jax.random.key(1),
        num_steps=30,
        progress=False,
        log_every=1000,
        time_budget_s=0.3,
        budget_clock=clock,
    )
    steps = int(state.step)
    assert (steps < 30) == stops_early, steps


def test_an_unknown_budget_clock_is_refused():
    state, step = setup()
    with pytest.raises(ValueError, match="'gpu'.*cpu"):
        fit(state, step, batches(0), jax.random.key(1), num_steps=2, budget_clock="gpu")
