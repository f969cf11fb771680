import pytest

from symdiff_jax.metrics.records import shared_keys


def test_shared_keys_returns_the_first_records_order():
    assert shared_keys([{"b": 1, "a": 2}, {"a": 3, "b": 4}]) == ["b", "a"]


def test_shared_keys_rejects_no_records_and_different_metrics():
    with pytest.raises(ValueError, match="at least one run"):
        shared_keys([], "run")
    with pytest.raises(ValueError, match=r"run 1 has metrics \['c'\].*same metrics"):
        shared_keys([{"a": 1}, {"c": 1}], "run")
    with pytest.raises(ValueError, match="run 2"):
        shared_keys([{"a": 1}, {"a": 2}, {"a": 3, "b": 4}], "run")
