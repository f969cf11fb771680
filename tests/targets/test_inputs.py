import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.targets.inputs import check_inputs, expand_bank, parse_group, posterior_mean

pytestmark = pytest.mark.usefixtures("x64")


def test_parse_group_names_and_matrices():
    o3 = parse_group("O3", 3, jnp.float64)
    assert o3.continuous == "SO3"
    np.testing.assert_array_equal(np.asarray(o3.matrices), [np.eye(3), np.diag([1.0, 1.0, -1.0])])
    assert parse_group("SO2", 2, jnp.float64).matrices is None
    assert parse_group("trivial", 5, jnp.float64).continuous is None
    finite = parse_group(np.stack([np.eye(2), -np.eye(2)]), 2, jnp.float64)
    assert finite.name == "finite" and bool(finite.valid)
    with pytest.raises(ValueError, match="Unknown group"):
        parse_group("SE3", 3, jnp.float64)
    with pytest.raises(ValueError, match="acts on 3-dimensional points"):
        parse_group("O3", 2, jnp.float64)
    with pytest.raises(ValueError, match=r"shape \[K, d, d\]"):
        parse_group(np.eye(2), 2, jnp.float64)


@pytest.mark.allow_nonfinite
def test_check_inputs_zeroes_padding_and_flags_bad_values_under_jit():
    x_t = np.arange(6.0).reshape(3, 2)
    x0 = np.ones((2, 3, 2))
    mask = np.array([1.0, 1.0, 0.0])
    inp = check_inputs(x_t, x0, 0.5, 0.2, mask)
    np.testing.assert_array_equal(np.asarray(inp.x_t)[2], 0.0)
    np.testing.assert_array_equal(np.asarray(inp.x0)[:, 2], 0.0)
    np.testing.assert_array_equal(np.asarray(inp.log_weights), [0.0, 0.0])
    assert bool(inp.valid)
    with pytest.raises(ValueError, match="sigma"):
        check_inputs(x_t, x0, 0.5, 0.0, mask)
    with pytest.raises(ValueError, match=r"x0 of shape \(2, 4, 2\) does not match"):
        check_inputs(x_t, np.ones((2, 4, 2)), 0.5, 0.2)
    valid = jax.jit(lambda s: check_inputs(x_t, x0, 0.5, s, mask).valid)
    assert bool(valid(0.2)) and not bool(valid(-0.2))


def test_expand_bank_order_and_action():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(2, 3, 2))
    perms = np.array([[0, 1, 2], [2, 0, 1]])
    mats = np.stack([np.eye(2), np.array([[0.0, -1.0], [1.0, 0.0]])])
    bank, log_w = expand_bank(jnp.asarray(x0), jnp.array([0.1, 0.2]), jnp.asarray(mats), perms)
    assert bank.shape == (8, 3, 2)
    i = 0
    for p in perms:  # permutation-major, then matrices, then samples
        for g in mats:
            for m in range(2):
                np.testing.assert_allclose(np.asarray(bank[i]), x0[m][p] @ g.T)
                assert float(log_w[i]) == [0.1, 0.2][m]
                i += 1


def test_posterior_mean_is_the_softmax_average():
    logits = jnp.array([0.0, np.log(3.0)])
    means = jnp.stack([jnp.zeros((2, 1)), jnp.ones((2, 1))])
    got = posterior_mean(logits, means, jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(np.asarray(got), [[0.75], [0.0]])
