"""Property assertions for equivariance, deterministic and in distribution.

`assert_equivariant` checks f(g . x) = g . f(x) with chex;
`assert_stochastically_equivariant` checks k(. | g . x) = g . k(. | x) in law with
an exact permutation two-sample test of stated false-alarm rate.
"""

from symdiff_jax.testing.equivariance import (
    act_on_atom_features,
    act_on_invariant,
    act_on_rotation,
    act_on_state,
    assert_equivariant,
    assert_stochastically_equivariant,
    sample_test_element,
)
from symdiff_jax.testing.parameters import randomise_parameters
from symdiff_jax.testing.two_sample import TwoSampleResult, energy_test

__all__ = [
    "TwoSampleResult",
    "act_on_atom_features",
    "act_on_invariant",
    "act_on_rotation",
    "act_on_state",
    "assert_equivariant",
    "assert_stochastically_equivariant",
    "energy_test",
    "randomise_parameters",
    "sample_test_element",
]
