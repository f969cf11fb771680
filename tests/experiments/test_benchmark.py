"""`python -m experiments.benchmark`: the CLI end to end (tiny settings), and its pieces."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import configs
from experiments.common import timing
from experiments.qm9 import benchmark, benchmark_figures, model


def qm9_config(variant: str, size: str | None = None):
    return configs.get_config(f"qm9_{variant}", size)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIRED = (
    "train_step_ms",
    "sample_step_ms",
    "compile_s",
    "params",
    "peak_rss_mb",
    "devices",
    "target_ms",
    "sample_run_s",
    "target_overhead",
    "train_buffers_mb",
    "train_temp_mb",
    "matmul_peak_gflop_per_s",
    "train_step_gflop",
    "train_step_utilisation",
    "sample_step_utilisation",
)


@pytest.fixture(scope="module")
def cli_run():
    """One CLI run of `qm9_symdiff.py:smoke` on 2 faked CPU devices (stdout lines)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=2"])
    # The CLI's plumbing is under test, not XLA's optimiser: compile fast.
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "experiments.benchmark",
        "--config",
        "configs/qm9_symdiff.py:smoke",
        "--batch_size",
        "4",
        "--num_steps",
        "10",
        "--warmup",
        "1",
        "--config.sample.num_steps=2",
        "--bucket_widths=none",  # the parsing; bucketed figures are tested in process
        "--compilation_cache",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()


def test_last_line_is_json_with_every_figure(cli_run):
    result = json.loads(cli_run[-1])
    for key in REQUIRED:
        assert key in result, key
        assert isinstance(result[key], int | float) and math.isfinite(result[key]), key
        assert result[key] > 0, key
    assert result["devices"] == 2
    assert result["batch_size"] == 4 and result["num_atoms"] == 29
    assert result["sample_num_steps"] == 2
    assert result["target_overhead"] == pytest.approx(
        result["target_ms"] / result["train_step_ms"], rel=1e-9
    )
    assert result["train_step_ms_min"] <= result["train_step_ms"]
    assert math.isfinite(result["train_loss"])
    assert "bucket_widths" not in result and "train_step_ms_bucketed" not in result
    assert result["keep_freed_memory"] in (True, False)
    assert result["train_buffers_mb"] > result["train_temp_mb"]
    assert 1 <= result["batch_max_atoms_mean"] <= result["num_atoms"]
    for step in ("train_step", "sample_step"):
        assert 0 < result[f"{step}_utilisation"] < 1  # a tiny model is far from the peak
        assert result[f"{step}_floor_ms"] == pytest.approx(
            result[f"{step}_ms"] * result[f"{step}_utilisation"], rel=1e-9
        )


def test_compiled_buffers_count_the_arguments_and_the_temporaries():
    """`sin(a @ b) @ cos(a @ b)` keeps its 512 x 512 operands as temporaries."""
    x = jnp.ones((512, 512), jnp.float32)
    fn = jax.jit(lambda a, b: jnp.sum(jnp.sin(a @ b) @ jnp.cos(a @ b)))
    compiled = fn.lower(x, x).compile()
    total, temp = timing.compiled_buffers_mb(compiled)
    one = 512 * 512 * 4 / 2**20
    assert temp >= one  # at least one operand of the second product
    assert total == pytest.approx(2 * one + temp)


def test_compiled_flops_count_a_matmul_as_2mnk():
    a, b = jnp.ones((24, 40), jnp.float32), jnp.ones((40, 56), jnp.float32)
    compiled = jax.jit(jnp.matmul).lower(a, b).compile()
    assert timing.compiled_flops(compiled) == pytest.approx(2 * 24 * 40 * 56, rel=1e-6)


@pytest.mark.parametrize(
    "analysis, want", [(None, None), ({}, None), ([{"flops": 12.0}], 12.0), ({"flops": -1.0}, None)]
)
def test_compiled_flops_without_a_count_is_none(analysis, want):
    class Compiled:
        def cost_analysis(self):
            return analysis

    assert timing.compiled_flops(Compiled()) == want


def test_roofline_figures_follow_from_flops_time_and_peak():
    got = timing.roofline(3e9, 15.0, 400.0)  # 3 GFLOP in 15 ms against 400 GFLOP/s
    assert got == pytest.approx(
        {"gflop": 3.0, "gflop_per_s": 200.0, "utilisation": 0.5, "floor_ms": 7.5}
    )
    assert set(timing.roofline(None, 15.0, 400.0).values()) == {None}


def test_matmul_peak_is_the_fastest_call(monkeypatch):
    calls = iter([[1.0], [0.5, 0.25, 0.4]])  # the warm-up, then the timed calls
    monkeypatch.setattr(timing, "time_calls", lambda fn, num: next(calls))
    peak = timing.matmul_peak_gflop_per_s(size=128, num=3)
    assert peak == pytest.approx(2 * 128**3 / 0.25 / 1e9)
    with pytest.raises(ValueError, match="size and num"):
        timing.matmul_peak_gflop_per_s(size=0)


def test_matmul_peak_is_measured_in_the_compute_dtype():
    for dtype in (None, jnp.bfloat16):
        peak = timing.matmul_peak_gflop_per_s(dtype, size=128, num=2)
        assert math.isfinite(peak) and peak > 0


def test_parameter_count_is_the_models(cli_run):
    config = qm9_config("symdiff", "smoke")
    shapes = jax.eval_shape(
        lambda: nnx.split(model.build_model(config, jax.random.key(0)), nnx.Param)[1]
    )
    assert json.loads(cli_run[-1])["params"] == sum(x.size for x in jax.tree.leaves(shapes))


def test_table_precedes_the_json(cli_run):
    text = "\n".join(cli_run[:-1])
    for label in ("train step", "denoising step", "full sampling run", "exact O(3) target"):
        assert label in text
    assert "2 cpu device(s)" in text


def test_format_table_shows_missing_figures_as_dash():
    row = {
        "variant": "dit",
        "params": 10,
        "batch_size": 2,
        "num_atoms": 9,
        "data": "synthetic",
        "devices": 1,
        "platform": "cpu",
        "train_step_ms": 1.5,
        "target_overhead": 0.01,
        "sample_run_s": None,
        "peak_device_mb": float("nan"),
    }
    table = benchmark_figures.format_table(row)
    assert "1.5 ms" in table and "1.00 %" in table
    line = next(x for x in table.splitlines() if x.startswith("full sampling run"))
    assert line.split()[-1] == "-"


def test_synthetic_batch_is_centred_and_masked():
    config = qm9_config("symdiff", "smoke")
    b = benchmark_figures.synthetic_batch(config, 5, num_atoms=11, seed=1)
    assert b["positions"].shape == (5, 11, 3) and b["h"].shape == (5, 11, 6)
    mask = b["mask"]
    np.testing.assert_allclose((b["positions"] * mask[..., None]).sum(1), 0, atol=1e-5)
    assert np.all(b["positions"][mask == 0] == 0) and np.all(b["charges"][mask == 0] == 0)
    assert set(np.unique(b["charges"][mask > 0])) <= {1, 6, 7, 8, 9}


def test_data_batch_pads_to_the_requested_width():
    pytest.importorskip("qm9pack")
    config = qm9_config("symdiff", "smoke")
    b, source, num_train = benchmark_figures.data_batch(config, 6, num_atoms=12)
    assert source == "qm9" and num_train > 0
    assert b["mask"].shape == (6, 12) and b["positions"].shape == (6, 12, 3)
    assert np.all(b["mask"].sum(1) <= 12) and np.all(b["mask"].sum(1) >= 1)


def test_too_few_timed_steps_is_an_error():
    with pytest.raises(ValueError, match=">= 10"):
        benchmark.benchmark(qm9_config("symdiff", "smoke"), num_steps=3)
    with pytest.raises(ValueError, match="scan_steps must be >= 1"):
        benchmark.benchmark(qm9_config("symdiff", "smoke"), scan_steps=0)


def test_bucket_fractions_count_each_size_range_once():
    sizes = np.array([3, 9, 10, 11, 16, 17, 29, 29])
    np.testing.assert_allclose(
        benchmark_figures.bucket_fractions(sizes, [10, 16, 29]), [3 / 8, 2 / 8, 3 / 8]
    )
    with pytest.raises(ValueError, match="must hold every molecule"):
        benchmark_figures.bucket_fractions(sizes, [10, 16])
    with pytest.raises(ValueError, match="increasing"):
        benchmark_figures.bucket_fractions(sizes, [16, 10, 29])


def test_batch_max_atoms_mean_is_the_mean_over_every_possible_batch():
    """Exact: the mean largest size over all `M^B` ordered draws, enumerated."""
    sizes = np.array([3, 5, 5, 9, 12, 12, 12])
    for batch in (1, 2, 3, 4):
        draws = itertools.product(sizes, repeat=batch)
        want = np.mean([max(d) for d in draws])
        np.testing.assert_allclose(
            benchmark_figures.batch_max_atoms_mean(sizes, batch), want, rtol=1e-12
        )
    np.testing.assert_allclose(benchmark_figures.batch_max_atoms_mean(sizes, 1), sizes.mean())
    with pytest.raises(ValueError, match="positive sizes"):
        benchmark_figures.batch_max_atoms_mean(np.array([0, 4]), 2)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        benchmark_figures.batch_max_atoms_mean(sizes, 0)


@pytest.mark.slow
def test_bucketed_figures_are_the_weighted_widths():
    """Each bucket's batch has molecules of its size range; the average uses the weights."""
    config = qm9_config("symdiff", "smoke")
    low = benchmark_figures.synthetic_batch(config, 6, num_atoms=12, seed=2, min_atoms=9)
    assert low["mask"].shape == (6, 12) and set(low["mask"].sum(1)) <= set(range(9, 13))
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        res = benchmark.benchmark(
            config, batch_size=2, num_steps=10, warmup=1, sample_runs=0, synthetic=True,
            bucket_widths=(12, 29), scan_steps=2,
        )  # fmt: skip
    finally:
        jax.config.update("jax_disable_most_optimizations", False)
    assert res["bucket_widths"] == [12, 29]
    np.testing.assert_allclose(sum(res["bucket_fractions"]), 1.0)
    for key in ("train", "sample"):
        per_width = np.asarray(res[f"{key}_step_ms_by_width"])
        assert np.all(per_width > 0)
        want = float(np.dot(res["bucket_fractions"], per_width))
        assert res[f"{key}_step_ms_bucketed"] == pytest.approx(want, rel=1e-12)
    assert res["sample_run_s_bucketed"] == pytest.approx(
        res["sample_step_ms_bucketed"] * (config.sample.num_steps + 1) / 1e3, rel=1e-12
    )
    assert res["bucket_compile_s"] > 0
    flops = np.dot(res["bucket_fractions"], res["train_step_gflop_by_width"])
    assert res["train_step_gflop_by_width"][0] < res["train_step_gflop_by_width"][1]
    assert res["train_step_floor_ms_bucketed"] == pytest.approx(
        1e3 * flops / res["matmul_peak_gflop_per_s"], rel=1e-9
    )
    assert res["train_step_utilisation_bucketed"] == pytest.approx(
        res["train_step_floor_ms_bucketed"] / res["train_step_ms_bucketed"], rel=1e-9
    )
    assert "train step, bucketed" in benchmark_figures.format_table(res)
    # Two molecules plan into batches of 2 rows, shapes the widths already timed.
    widths, by_width = res["bucket_widths"], res["sample_step_ms_by_width"]
    assert res["sample_plan"] and all(rows == 2 for rows, _ in res["sample_plan"])
    want = sum(by_width[widths.index(w)] for _, w in res["sample_plan"])
    assert res["sample_step_ms_planned"] == pytest.approx(want, rel=1e-12)
    assert res["sample_run_s_planned"] == pytest.approx(
        want * (config.sample.num_steps + 1) / 1e3, rel=1e-12
    )
    assert res["plan_compile_s"] == 0.0
    want = res["sample_step_gflop_planned"] * 1e3 / res["matmul_peak_gflop_per_s"]
    assert res["sample_step_floor_ms_planned"] == pytest.approx(want, rel=1e-9)
    # The seed's two molecules plan into a batch narrower than the padded 29.
    assert 0 < res["sample_step_gflop_planned"] < res["sample_step_gflop"]
    assert "denoising, planned" in benchmark_figures.format_table(res)


def test_planned_sampling_times_each_batch_of_the_plan():
    """Every planned batch is charged its own shape's time; new shapes are timed once."""
    config = qm9_config("symdiff", "smoke")
    masks = []

    def fake_call_ms(mask):  # a time proportional to the padded atoms
        masks.append(mask)
        return float(mask.size), 0.5

    sizes = np.arange(2, 30)  # as for a synthetic batch
    flop_masks = []

    def fake_call_flops(mask):  # FLOPs proportional to the padded atoms
        flop_masks.append(mask)
        return 1e9 * mask.size

    res = benchmark_figures.planned_sampling(
        config, 40, (12, 20, 29), sizes, 3, {}, fake_call_ms, fake_call_flops
    )
    plan = res["sample_plan"]
    assert sum(rows for rows, _ in plan) >= 40 and {w for _, w in plan} <= {12, 20, 29}
    assert len(plan) >= 2  # sizes 2..29 do not fit one narrow batch
    assert res["sample_step_ms_planned"] == sum(rows * w for rows, w in plan)
    assert len(masks) == len({tuple(p) for p in plan})  # each shape timed once
    assert res["plan_compile_s"] == 0.5 * len(masks)
    assert res["sample_step_gflop_planned"] == sum(rows * w for rows, w in plan)
    assert len(flop_masks) == len(plan)  # one count per batch of the plan
    no_count = benchmark_figures.planned_sampling(
        config, 40, (12, 20, 29), sizes, 3, {}, fake_call_ms
    )
    assert no_count["sample_step_gflop_planned"] is None
    for mask in masks:
        sizes = mask.sum(1)
        assert np.all(sizes >= 2) and np.all(mask == (np.arange(mask.shape[1]) < sizes[:, None]))
    assert 2 * 40 <= res["sample_plan_atoms"] <= 29 * 40
