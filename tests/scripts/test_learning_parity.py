"""scripts/learning_parity.py: log parsing, the recipe's overrides and the loss conversion."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from configs import qm9_symdiff

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "learning_parity.py")


@pytest.fixture(scope="module")
def lp():
    spec = importlib.util.spec_from_file_location("learning_parity", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_read_official_parses_steps_validation_and_epoch_times(lp, tmp_path):
    steps = [f"{i}it [00:0{i}, 1.0it/s]Epoch: {e}, iter: {i}/3, Loss {2.5 - i / 10 - e:.2f}, "
             f"NLL: 0.00, RegTerm: 0.0, GradNorm: 0.4" for e in (0, 1) for i in range(3)]  # fmt: skip
    log = "\r".join(steps[:3]) + "\nEpoch took 3.5 seconds.\n--- Epoch 1 ---\n"
    log += (
        "\r".join(steps[3:])
        + "\nEpoch took 4.0 seconds.\n Val NLL \t epoch: 1, iter: 0/8, NLL: 9\n"
    )
    log += (
        "Val loss: 123.4500 \t Test loss:  120.0000\nBest val loss: 123.4500 \t Best test loss: 1\n"
    )
    (tmp_path / "log.txt").write_text(log)
    (tmp_path / "wall.json").write_text(json.dumps({"wall_s": 9.0, "returncode": 0}))
    out = lp.read_official(str(tmp_path))
    np.testing.assert_allclose(out["loss"], [2.5, 2.4, 2.3, 1.5, 1.4, 1.3])
    assert out["val"] == [(6, 123.45)]
    assert out["train_s"] == pytest.approx(7.5)
    assert out["wall_s"] == 9.0


def test_ours_command_overrides_name_existing_config_keys(lp):
    config = qm9_symdiff.get_config("small")
    flags = [a for a in lp.ours_command("d", "w", 3, 1200, 300) if a.startswith("--config.")]
    assert len(flags) > 10
    for flag in flags:
        path, value = flag[len("--config.") :].split("=", 1)
        node = config
        for key in path.split("."):
            assert key in node, f"{flag}: no key {key!r}"
            node = node[key]
    assert "--config.num_train_steps=1200" in flags and "--config.seed=3" in flags


def test_loss_conversion_for_molecules_of_one_size(lp, tmp_path):
    from symdiff_jax.data import load_qm9

    os.makedirs(tmp_path / "qm9")
    for split, m in (("train", 256), ("valid", 16)):
        np.savez(tmp_path / "qm9" / f"{split}.npz", num_atoms=np.full(m, 19))
    counts = np.bincount(load_qm9("train")["num_atoms"], minlength=30)
    p19 = counts[19] / counts.sum()
    conv = lp.loss_conversion(str(tmp_path), draws=20)
    assert conv["rho"] == pytest.approx(19 / 29)
    assert conv["c"] == pytest.approx(-np.log(p19))
    assert conv["dlogp"] == pytest.approx(np.log(p19))
