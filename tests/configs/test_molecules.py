"""configs/molecules.py: its variants, the keys of a molecule source, the checks it passes."""

from __future__ import annotations

import pytest

import configs
from experiments.common.cli import ConfigError, check_config


@pytest.mark.parametrize("size", [None, "small", "smoke"])
def test_variants_set_the_source_keys(size):
    c = configs.get_config("molecules", size)
    assert c.data.dataset == "molecules" and c.experiment == "qm9"
    assert c.data.source == "" and c.data.elements == "" and c.data.max_atoms == 0
    assert c.data.strict is False and tuple(c.data.bucket_sizes) == ()
    assert abs(sum(c.data.split_fractions) - 1) < 1e-9
    assert c.evaluate.novelty is True
    with pytest.raises(ConfigError, match="data.source is empty"):
        check_config(c)  # the source is required
    c.data.source = "ligands.sdf"
    check_config(c)


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="'huge'.*small"):
        configs.get_config("molecules", "huge")


@pytest.mark.parametrize("fractions", [(0.5, 0.2, 0.2), (0.0, 0.5, 0.5), (0.8, 0.2)])
def test_bad_split_fractions_are_refused(fractions):
    c = configs.get_config("molecules", "smoke")
    c.data.source = "ligands.sdf"
    c.data.split_fractions = fractions
    with pytest.raises(ConfigError, match="split_fractions"):
        check_config(c)
