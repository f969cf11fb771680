"""Which sampler serves which objective, and the flow-matching run's refusals."""

import types

import pytest

import configs
from experiments.qm9.evaluate import test_nll as qm9_test_nll
from experiments.qm9.sampling import SAMPLERS, check_sampler, generator_of


@pytest.mark.parametrize(
    "name, sampler", [("qm9_symdiff", "ancestral"), ("qm9_symdiff_flow", "euler")]
)
def test_each_config_samples_with_its_objectives_sampler(name, sampler):
    config = configs.get_config(name, "smoke")
    assert config.sample.sampler == sampler
    assert check_sampler(config, sampler) == sampler
    assert sampler in SAMPLERS[generator_of(config)]


@pytest.mark.parametrize(
    "name, wrong", [("qm9_symdiff", "euler"), ("qm9_symdiff_flow", "ancestral")]
)
def test_a_sampler_of_the_other_objective_is_refused(name, wrong):
    with pytest.raises(ValueError, match=f"sampler '{wrong}' does not sample"):
        check_sampler(configs.get_config(name, "smoke"), wrong)


def test_unknown_objective_and_flow_test_nll_are_refused():
    config = configs.get_config("qm9_symdiff_flow", "smoke")
    with pytest.raises(ValueError, match="no"):
        qm9_test_nll(types.SimpleNamespace(config=config), None)
    config.generator = "score"
    with pytest.raises(ValueError, match="config.generator must be one of"):
        generator_of(config)


def test_configs_written_before_the_objective_key_are_diffusion():
    config = configs.get_config("qm9_symdiff", "smoke")
    del config["generator"]
    assert generator_of(config) == "diffusion"
