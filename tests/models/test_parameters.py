"""Parameter counts: a module and its parameter pytree agree; shared submodules count once."""

import jax
from flax import nnx

from symdiff_jax.models.parameters import count_params, param_breakdown


class TwoLinears(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(3, 4, rngs=rngs)  # 3 * 4 + 4 = 16
        self.b = nnx.Linear(4, 2, use_bias=False, rngs=rngs)  # 8
        self.a_again = self.a


def test_module_pytree_and_abstract_module_give_the_same_count():
    model = TwoLinears(nnx.Rngs(0))
    assert count_params(model) == 24
    assert count_params(nnx.state(model, nnx.Param)) == 24
    assert count_params(nnx.eval_shape(lambda: TwoLinears(nnx.Rngs(0)))) == 24
    assert count_params({"w": jax.numpy.zeros((2, 5)), "b": [jax.numpy.zeros(3)]}) == 13


def test_breakdown_lists_shared_submodules_under_each_name():
    assert param_breakdown(TwoLinears(nnx.Rngs(0))) == {"a": 16, "b": 8, "a_again": 16}
