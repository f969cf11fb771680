"""experiments.common.cli in process: every shipped config passes the checks; each rule bites."""

from __future__ import annotations

import math

import pytest

import configs
from experiments.common.cli import RULES, ConfigError, check_config, flat_items


def _shipped():
    for name in configs.names():
        for size in (None, "small", "smoke"):
            try:
                config = configs.get_config(name, size)
            except ValueError:
                continue  # a config without that variant
            if config.get("data") is not None and config.data.get("dataset") == "molecules":
                config.data.source = "ligands.sdf"
            yield f"{name}:{size or ''}", config


def test_every_shipped_config_passes():
    checked = 0
    for label, config in _shipped():
        try:
            check_config(config)
        except ConfigError as err:
            raise AssertionError(f"{label}: {err}") from err
        checked += 1
    assert checked >= len(configs.names())


BAD = {"batch_size": 0, "learning_rate": math.nan, "ema_decay": 1.0, "num_steps": 0}


@pytest.mark.parametrize("leaf", sorted(BAD))
def test_each_rule_refuses_a_bad_value_in_every_config_that_has_it(leaf):
    found = 0
    for _, config in _shipped():
        for key, _ in list(flat_items(config)):
            if key.rsplit(".", 1)[-1] != leaf:
                continue
            section, _, name = key.rpartition(".")
            target = config
            for part in filter(None, section.split(".")):
                target = target[part]
            old, target[name] = target[name], BAD[leaf]
            with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                check_config(config)
            target[name] = old
            found += 1
    assert found > 0 and leaf in RULES
