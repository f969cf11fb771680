import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.pretrained.export import (
    FILES,
    check_name,
    flat_params,
    named_leaves,
    write_pretrained,
)

PARAMS = {"dit": {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.zeros(3)}, "gamma": [jnp.ones(1)]}
CARD = {"step": 7, "num_features": 6, "train_size_histogram": [0, 1, 2]}


def test_names_follow_the_pytree_paths():
    names = [n for n, _ in named_leaves(PARAMS)]
    assert names == ["dit/b", "dit/w", "gamma/0"]
    flat = flat_params(PARAMS)
    assert all(v.dtype == np.float32 for v in flat.values())
    np.testing.assert_array_equal(flat["dit/w"], np.ones((2, 3)))


@pytest.mark.allow_nonfinite
def test_flat_params_rejects_integers_and_non_finite_values():
    with pytest.raises(ValueError, match="a/b has dtype int32"):
        flat_params({"a": {"b": np.arange(2, dtype=np.int32)}})
    with pytest.raises(ValueError, match="x holds NaN or Inf"):
        flat_params({"x": np.array([1.0, np.inf])})


def test_check_name():
    assert check_name("qm9_symdiff-cpu.v1") == "qm9_symdiff-cpu.v1"
    for bad in ("", ".hidden", "-x", "a/b", "a b", None):
        with pytest.raises(ValueError, match="A model name"):
            check_name(bad)


def test_write_pretrained_files_card_and_refusals(tmp_path):
    path = write_pretrained(str(tmp_path), "m", PARAMS, {"seed": 1}, CARD)
    assert sorted(os.listdir(path)) == sorted(FILES)
    card = json.load(open(os.path.join(path, "metrics.json")))
    assert card["name"] == "m" and card["num_parameters"] == 10 and card["step"] == 7
    with np.load(os.path.join(path, "params.npz")) as z:
        assert sorted(z.files) == ["dit/b", "dit/w", "gamma/0"]
    with pytest.raises(ValueError, match="lacks \\['train_size_histogram'\\]"):
        write_pretrained(str(tmp_path), "n", PARAMS, {}, {"step": 1, "num_features": 6})
    assert not os.path.exists(tmp_path / "n")
