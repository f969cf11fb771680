"""`experiments.common.validation`: a step scored over fixed batches with fixed keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.common.validation import batch_outputs, mean_loss


def _step(params, batch, key):
    return {"loss": params * batch + jax.random.uniform(key, batch.shape), "batch": batch}


BATCHES = [jnp.arange(3.0), jnp.arange(2.0) + 10.0]


def test_batch_outputs_give_batch_i_the_key_folded_with_i():
    key = jax.random.key(0)
    outs = batch_outputs(_step, 2.0, BATCHES, key)
    assert len(outs) == len(BATCHES)
    for i, (out, batch) in enumerate(zip(outs, BATCHES, strict=True)):
        assert isinstance(out, np.ndarray)
        expected = _step(2.0, batch, jax.random.fold_in(key, i))["loss"]
        np.testing.assert_array_equal(out, np.asarray(expected))
    assert batch_outputs(_step, 2.0, BATCHES, key, name="batch")[1].tolist() == [10.0, 11.0]


def test_mean_loss_is_the_mean_over_examples_not_over_batches():
    key = jax.random.key(1)
    values = np.concatenate(batch_outputs(_step, 2.0, BATCHES, key))
    assert values.shape == (5,)
    assert mean_loss(_step, 2.0, BATCHES, key) == pytest.approx(values.sum() / 5, rel=1e-6)
