import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.train.tree_checks import (
    abstract_target,
    leaf_signature,
    non_finite_leaves,
    tree_differences,
)


def test_leaf_signature_of_arrays_scalars_and_keys():
    assert leaf_signature(np.zeros((2, 3), np.float32)) == ((2, 3), np.dtype(np.float32))
    assert leaf_signature(1.5) == ((), None)
    assert leaf_signature("text") == (None, None)
    shape, dtype = leaf_signature(jax.random.key(0))
    assert shape == (2,) and dtype == np.dtype(np.uint32)  # threefry key data


def test_tree_differences_names_missing_extra_and_changed_leaves():
    stored = {
        ("params", "w"): jax.ShapeDtypeStruct((2, 3), jnp.float32),
        ("params", "b"): jax.ShapeDtypeStruct((3,), jnp.float32),
        ("old",): jax.ShapeDtypeStruct((1,), jnp.float32),
    }
    wanted = {
        ("params", "w"): np.zeros((2, 4), np.float32),
        ("params", "b"): np.zeros((3,), np.float32),
        ("new",): np.zeros(1, np.float32),
    }
    text = "\n".join(tree_differences(stored, wanted))
    assert "in the checkpoint but not in the target (1):\n    old" in text
    assert "in the target but not in the checkpoint (1):\n    new" in text
    assert "params/w: checkpoint (2, 3) float32, target (2, 4) float32" in text
    assert "params/b" not in text
    assert tree_differences(stored, dict(stored)) == []


@pytest.mark.allow_nonfinite
def test_non_finite_leaves_lists_paths():
    state = {"a": jnp.array([1.0, jnp.nan]), "b": np.ones(2), "c": jnp.arange(3), "d": float("inf")}
    assert non_finite_leaves(state) == ["['a']", "['d']"]


def test_abstract_target_keeps_numpy_and_places_structs():
    target = {"x": jnp.ones(2), "y": jax.ShapeDtypeStruct((3,), jnp.float32), "z": np.ones(1)}
    out = abstract_target(target)
    assert isinstance(out["x"], jax.ShapeDtypeStruct) and out["x"].sharding == target["x"].sharding
    assert out["y"].sharding is not None
    assert out["z"] is target["z"]
