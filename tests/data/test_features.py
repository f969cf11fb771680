"""Atom features (one-hot / 4, Z / 10) and masks, for numpy and JAX inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symdiff_jax.data import (
    NUM_FEATURES,
    atom_mask,
    atomic_numbers_from_features,
    edge_mask,
    featurise,
    mask_from_charges,
    one_hot,
)

CHARGES = np.array([[8, 1, 1, 0, 0], [6, 7, 9, 1, 0]])


def test_featurise_raw_and_scaled_by_hand():
    raw = featurise(CHARGES, scaled=False)
    assert raw.shape == (2, 5, NUM_FEATURES) and raw.dtype == np.float32
    # Water: O then two H; H, C, N, O, F order; last column the atomic number.
    np.testing.assert_array_equal(raw[0, 0], [0, 0, 0, 1, 0, 8])
    np.testing.assert_array_equal(raw[0, 1], [1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(raw[1, 2], [0, 0, 0, 0, 1, 9])
    np.testing.assert_array_equal(raw[0, 3:], 0)
    scaled = featurise(CHARGES)
    np.testing.assert_allclose(scaled[1, 1], [0, 0, 0.25, 0, 0, 0.7])
    np.testing.assert_allclose(scaled[..., :5], raw[..., :5] / 4)
    np.testing.assert_allclose(scaled[..., 5], raw[..., 5] / 10)


def test_explicit_mask_zeroes_rows():
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], np.float32)
    h = featurise(CHARGES, mask)
    np.testing.assert_array_equal(h[0, 2], 0)
    np.testing.assert_array_equal(h[1], featurise(CHARGES)[1])


def test_jax_inputs_give_jax_outputs_and_jit():
    h_np = featurise(CHARGES)
    h_jax = jax.jit(featurise)(jnp.asarray(CHARGES))
    assert isinstance(h_jax, jax.Array)
    np.testing.assert_allclose(np.asarray(h_jax), h_np)


def test_decode_round_trip_and_noise():
    mask = mask_from_charges(CHARGES)
    for h in (featurise(CHARGES), featurise(CHARGES, scaled=False)):
        np.testing.assert_array_equal(atomic_numbers_from_features(h, mask), CHARGES)
    noisy = featurise(CHARGES) + 0.05 * np.random.default_rng(0).normal(size=(2, 5, 6))
    np.testing.assert_array_equal(atomic_numbers_from_features(noisy, mask), CHARGES)


def test_masks():
    np.testing.assert_array_equal(atom_mask(np.array([3, 4]), 5), mask_from_charges(CHARGES))
    e = edge_mask(mask_from_charges(CHARGES))
    assert e.shape == (2, 5, 5)
    assert e[0].sum() == 3 * 2 and e[1].sum() == 4 * 3
    assert np.all(np.diagonal(e, axis1=-2, axis2=-1) == 0)
    np.testing.assert_array_equal(one_hot(np.array([2, 6])), [[0, 0, 0, 0, 0], [0, 1, 0, 0, 0]])


@pytest.mark.parametrize("scaled", [True, False])
def test_padding_is_exactly_zero(scaled):
    h = featurise(CHARGES, scaled=scaled)
    assert np.all(h[CHARGES == 0] == 0)


def test_other_element_sets():
    charges = np.array([[6, 17, 1, 0], [16, 6, 35, 1]])
    types = (1, 6, 8, 16, 17, 35)
    raw = featurise(charges, scaled=False, atom_types=types)
    assert raw.shape == (2, 4, len(types) + 1)
    np.testing.assert_array_equal(raw[0, 1], [0, 0, 0, 0, 1, 0, 17])
    np.testing.assert_array_equal(raw[1, 2], [0, 0, 0, 0, 0, 1, 35])
    np.testing.assert_array_equal(raw[0, 3], 0)
    np.testing.assert_array_equal(one_hot(charges, atom_types=types), raw[..., :6])
    mask = mask_from_charges(charges)
    h = jax.jit(lambda z: featurise(z, atom_types=types))(jnp.asarray(charges))
    np.testing.assert_array_equal(atomic_numbers_from_features(h, mask, types), charges)
    # The defaults are QM9's H, C, N, O, F.
    np.testing.assert_array_equal(
        featurise(CHARGES), featurise(CHARGES, atom_types=(1, 6, 7, 8, 9))
    )
