"""`symdiff_jax.pretrained.load`: shipped models written by `write_pretrained`, read back."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import configs
from symdiff_jax.models.factory import build_denoiser
from symdiff_jax.pretrained import MODELS_ENV, available, load, read_card, write_pretrained
from symdiff_jax.pretrained.export import FILES, flat_params
from symdiff_jax.pretrained.shipped import PACKAGE_MODELS

NUM_FEATURES = 6  # QM9: 5 one-hot types + charge


def _model(kind="symdiff", seed=0):
    config = configs.get_config(f"qm9_{kind}", "smoke")
    model = build_denoiser(config.model, NUM_FEATURES, jax.random.key(seed))
    return config, model


def _card(step=7):
    return {"step": step, "num_features": NUM_FEATURES, "train_size_histogram": [0, 1, 2]}


def _inputs():
    k = jax.random.key(5)
    x = jax.random.normal(k, (2, 6, 3))
    h = jax.random.normal(jax.random.fold_in(k, 1), (2, 6, NUM_FEATURES))
    mask = jnp.array([[1.0] * 6, [1.0] * 4 + [0.0] * 2])
    return x, h, jnp.array([0.2, 0.8]), mask


@pytest.mark.parametrize("kind", ["symdiff", "edm"])
def test_load_returns_the_written_model(tmp_path, kind):
    config, model = _model(kind)
    _, params = nnx.split(model, nnx.Param)
    path = write_pretrained(str(tmp_path), "tiny", params, config, _card())
    assert sorted(os.listdir(path)) == sorted(FILES)
    assert available(str(tmp_path)) == ["tiny"]

    loaded, loaded_config = load("tiny", models_root=str(tmp_path))
    assert loaded_config.to_dict() == json.loads(json.dumps(config.to_dict()))
    ours, theirs = flat_params(nnx.split(loaded, nnx.Param)[1]), flat_params(params)
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    key = jax.random.key(1)
    for a, b in zip(loaded(key, *_inputs()), model(key, *_inputs()), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    card = read_card("tiny", str(tmp_path))
    assert card["step"] == 7 and card["format"] == 1 and card["name"] == "tiny"
    assert card["num_parameters"] == sum(v.size for v in theirs.values())


def test_unknown_name_lists_the_available_models(tmp_path):
    config, model = _model()
    params = nnx.split(model, nnx.Param)[1]
    for name in ("alpha", "beta"):
        write_pretrained(str(tmp_path), name, params, config, _card())
    with pytest.raises(ValueError, match=r"'nope'.*available: alpha, beta"):
        load("nope", models_root=str(tmp_path))
    with pytest.raises(ValueError, match="available: none"):
        load("alpha", models_root=str(tmp_path / "empty"))


def test_models_root_comes_from_the_environment(tmp_path, monkeypatch):
    config, model = _model()
    write_pretrained(str(tmp_path), "env_model", nnx.split(model, nnx.Param)[1], config, _card())
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert available() == ["env_model"]
    denoiser, _ = load("env_model")
    assert np.isfinite(np.asarray(denoiser(jax.random.key(0), *_inputs())[0])).all()


def test_rewrite_is_atomic_and_failures_keep_the_old_model(tmp_path):
    config, model = _model()
    params = nnx.split(model, nnx.Param)[1]
    write_pretrained(str(tmp_path), "m", params, config, _card(step=1))
    write_pretrained(str(tmp_path), "m", params, config, _card(step=2))
    assert read_card("m", str(tmp_path))["step"] == 2
    bad = {"layer": {"kernel": np.array([[1.0, np.nan]], np.float32)}}
    with pytest.raises(ValueError, match="NaN or Inf"):
        write_pretrained(str(tmp_path), "m", bad, config, _card(step=3))
    with pytest.raises(ValueError, match="lacks"):
        write_pretrained(str(tmp_path), "m", params, config, {"step": 4})
    assert read_card("m", str(tmp_path))["step"] == 2
    assert os.listdir(tmp_path) == ["m"]  # no temporary directories left behind


def test_parameters_that_do_not_fit_the_config_are_refused(tmp_path):
    config, model = _model()
    write_pretrained(str(tmp_path), "m", nnx.split(model, nnx.Param)[1], config, _card())
    path = os.path.join(tmp_path, "m", "config.json")
    with open(path) as f:
        stored = json.load(f)
    stored["model"]["hidden"] *= 2
    with open(path, "w") as f:
        json.dump(stored, f)
    with pytest.raises(ValueError, match="do not fit"):
        load("m", models_root=str(tmp_path))


def test_bad_names_are_refused(tmp_path):
    config, model = _model()
    for name in ("../up", ".hidden", "a/b", ""):
        with pytest.raises(ValueError, match="model name"):
            write_pretrained(str(tmp_path), name, nnx.split(model, nnx.Param)[1], config, _card())


@pytest.mark.parametrize("name", available(PACKAGE_MODELS) or ["(none shipped)"])
def test_shipped_models_load_and_denoise(name):
    if name not in available(PACKAGE_MODELS):
        pytest.skip("no model is shipped in symdiff_jax/pretrained/models")
    denoiser, config = load(name, models_root=PACKAGE_MODELS)
    card = read_card(name, PACKAGE_MODELS)
    assert card["num_features"] == NUM_FEATURES and card["step"] > 0
    eps_x, eps_h = denoiser(jax.random.key(0), *_inputs())
    assert eps_x.shape == (2, 6, 3) and eps_h.shape == (2, 6, NUM_FEATURES)
    assert np.isfinite(np.asarray(eps_x)).all() and np.isfinite(np.asarray(eps_h)).all()
