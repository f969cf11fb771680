"""Tests of symdiff_jax.train.metric_writer: JSON lines, TensorBoard events, resuming."""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.train.metric_writer import MetricWriter, read_metrics_jsonl


def _event_accumulator(logdir):
    """TensorBoard's own reader over `logdir` (skips the test if tensorboard is missing)."""
    module = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard is not installed (pip install tensorboard, or the [test] extra)",
    )
    accumulator = module.EventAccumulator(str(logdir), size_guidance={module.SCALARS: 0})
    accumulator.Reload()
    return accumulator


def _scalars(accumulator, tag):
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def test_jsonl_lines(tmp_path):
    with MetricWriter(tmp_path, tensorboard=False) as writer:
        writer.write_scalars(0, {"train/loss": 1.5, "lr": np.float32(0.25)})
        writer.write_scalars(np.int64(10), {"train/loss": jnp.asarray(0.75), "ok": True})
        writer.write_scalars(20, {"val/nll": jnp.ones((1, 1)) * 3})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 0, "train/loss": 1.5, "lr": 0.25},
        {"step": 10, "train/loss": 0.75, "ok": 1.0},
        {"step": 20, "val/nll": 3.0},
    ]
    assert read_metrics_jsonl(tmp_path) == read_metrics_jsonl(tmp_path / "metrics.jsonl")
    assert read_metrics_jsonl(tmp_path)[1] == {"step": 10, "train/loss": 0.75, "ok": 1.0}
    assert not (tmp_path / "tensorboard").exists()


def test_lines_are_on_disk_before_close(tmp_path):
    writer = MetricWriter(tmp_path, tensorboard=False)
    writer.write_scalars(1, {"a": 1.0})
    assert read_metrics_jsonl(tmp_path) == [{"step": 1, "a": 1.0}]
    writer.close()
    writer.close()  # idempotent


def test_non_finite_values_round_trip(tmp_path):
    """NaN / +-Inf are written as the json module's NaN / Infinity tokens and read back."""
    with MetricWriter(tmp_path, tensorboard=False) as writer:
        writer.write_scalars(3, {"nan": math.nan, "inf": jnp.inf, "ninf": -np.inf, "x": 1e-45})
    text = (tmp_path / "metrics.jsonl").read_text()
    assert '"nan": NaN' in text and '"inf": Infinity' in text and '"ninf": -Infinity' in text
    (record,) = read_metrics_jsonl(tmp_path)
    assert math.isnan(record["nan"]) and record["inf"] == math.inf and record["ninf"] == -math.inf
    assert record["x"] == 1e-45
    assert json.loads(text.splitlines()[0])["inf"] == math.inf


def test_resume_appends_to_json_and_tensorboard(tmp_path):
    """Two writers in quick succession (same second): nothing earlier is lost."""
    with MetricWriter(tmp_path) as writer:
        writer.write_scalars(0, {"loss": 4.0})
        writer.write_scalars(1, {"loss": 3.0})
    with MetricWriter(tmp_path) as writer:
        writer.write_scalars(2, {"loss": 2.0})
        writer.write_scalars(3, {"loss": 1.0})
    assert [r["step"] for r in read_metrics_jsonl(tmp_path)] == [0, 1, 2, 3]
    assert [r["loss"] for r in read_metrics_jsonl(tmp_path)] == [4.0, 3.0, 2.0, 1.0]
    assert len(os.listdir(tmp_path / "tensorboard")) == 2
    accumulator = _event_accumulator(tmp_path / "tensorboard")
    assert _scalars(accumulator, "loss") == [(0, 4.0), (1, 3.0), (2, 2.0), (3, 1.0)]


def test_resume_after_a_line_cut_short(tmp_path):
    with MetricWriter(tmp_path, tensorboard=False) as writer:
        writer.write_scalars(0, {"loss": 4.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 1, "lo')  # the process died in the middle of a line
    with MetricWriter(tmp_path, tensorboard=False) as writer:
        writer.write_scalars(1, {"loss": 3.0})
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: .*skip_invalid=True"):
        read_metrics_jsonl(tmp_path)
    with pytest.warns(UserWarning, match="metrics.jsonl:2"):
        records = read_metrics_jsonl(tmp_path, skip_invalid=True)
    assert records == [{"step": 0, "loss": 4.0}, {"step": 1, "loss": 3.0}]


def test_tensorboard_events_are_readable(tmp_path):
    values = np.random.default_rng(0).standard_normal(5)
    with MetricWriter(tmp_path) as writer:
        for step, value in enumerate(values):
            writer.write_scalars(10 * step, {"train/loss": value, "train/lr": 1e-3})
        writer.write_scalars(50, {"val/nll": math.nan, "val/bad": math.inf})
        writer.write_text(0, "config", "hidden=128")
    accumulator = _event_accumulator(tmp_path / "tensorboard")
    tags = accumulator.Tags()
    assert set(tags["scalars"]) == {"train/loss", "train/lr", "val/nll", "val/bad"}
    expected = [(10 * i, float(np.float32(v))) for i, v in enumerate(values)]  # stored as float32
    assert _scalars(accumulator, "train/loss") == expected
    (nan_event,) = accumulator.Scalars("val/nll")
    assert nan_event.step == 50 and math.isnan(nan_event.value)
    assert accumulator.Scalars("val/bad")[0].value == math.inf
    assert "config/text_summary" in tags["tensors"]
    text = accumulator.Tensors("config/text_summary")[0].tensor_proto.string_val[0]
    assert text == b"hidden=128"


def test_flush_makes_events_visible(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.write_scalars(7, {"loss": 0.5})
    writer.flush()
    assert _scalars(_event_accumulator(tmp_path / "tensorboard"), "loss") == [(7, 0.5)]
    writer.close()


@pytest.mark.parametrize(
    "step, scalars, error, match",
    [
        (1, {"loss": np.ones(3)}, ValueError, "'loss' must be a single real number"),
        (1, {"loss": "0.5"}, ValueError, "'loss' must be a single real number"),
        (1, {"step": 2.0}, ValueError, "reserved"),
        (1.5, {"loss": 1.0}, TypeError, "step must be an integer"),
        (1, {3: 1.0}, TypeError, "names must be strings"),
    ],
)
def test_rejects_bad_input_without_writing(tmp_path, step, scalars, error, match):
    with MetricWriter(tmp_path, tensorboard=False) as writer:
        with pytest.raises(error, match=match):
            writer.write_scalars(step, scalars)
    assert read_metrics_jsonl(tmp_path) == []


def test_write_after_close_raises(tmp_path):
    writer = MetricWriter(tmp_path, tensorboard=False)
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.write_scalars(0, {"a": 1.0})


def test_image_and_config_are_readable(tmp_path):
    grid = np.zeros((8, 12, 3), np.float32)
    grid[:, :6, 0] = 1.0  # left half red
    with MetricWriter(tmp_path) as writer:
        writer.write_image(5, "samples/grid", grid)
        writer.write_image(6, "samples/grey", np.full((4, 4), 255, np.uint8))
        writer.write_config({"model": {"hidden": 64}, "optim": {"learning_rate": 2e-4}})
        with pytest.raises(ValueError, match=r"shape \[H, W\]"):
            writer.write_image(7, "bad", np.zeros((2, 2, 2, 3)))
    module = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = module.EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={})
    accumulator.Reload()
    (event,) = accumulator.Images("samples/grid")
    assert (event.step, event.width, event.height) == (5, 12, 8)
    png = pytest.importorskip("PIL.Image")
    import io

    decoded = np.asarray(png.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
    assert decoded.shape == (8, 12, 3)
    assert (decoded[:, :6] == [255, 0, 0]).all() and (decoded[:, 6:] == 0).all()
    assert accumulator.Images("samples/grey")[0].step == 6
    text = accumulator.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"hidden": 64' in text and '"learning_rate": 0.0002' in text


def test_no_tensorboard_internals():
    """The writer uses tensorboardX's public SummaryWriter only."""
    import inspect

    from symdiff_jax.train import metric_writer

    source = inspect.getsource(metric_writer)
    for internal in ("event_file_writer", "event_pb2", "summary_pb2", "EventsWriter"):
        assert internal not in source
