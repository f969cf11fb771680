"""Every config file: its COMMAND line, its smoke variant, one spelling for each concept."""

import pytest

import configs

# Spellings that the configs replaced by one key each (see the configs' docstrings).
RETIRED = ("objective", "schedule_steps", "num_timesteps", "loss_weighting")


def _keys(config, prefix=""):
    out = []
    for k, v in config.items():
        out += _keys(v, f"{prefix}{k}.") if hasattr(v, "items") else [f"{prefix}{k}"]
    return out


@pytest.mark.parametrize("name", configs.names())
def test_config_file(name):
    with open(f"{configs.__path__[0]}/{name}.py") as f:
        command = f.readline()
    assert command.startswith("# COMMAND: python -m experiments.train"), command
    assert "--config" not in command or f"--config configs/{name}.py" in command, command
    keys = _keys(configs.get_config(name, "smoke"))
    parts = {p for k in keys for p in k.split(".")}
    assert not parts & set(RETIRED), sorted(parts & set(RETIRED))
    assert "diffusion.schedule" in keys, "the schedule lives in diffusion.schedule"
    assert ("diffusion.loss_weight" in keys) == name.startswith("toy_")
    assert ("diffusion.x_target" in keys) != name.startswith("toy_")


def test_unknown_config_name():
    with pytest.raises(ValueError, match="Unknown config 'qm9_symdif'"):
        configs.get_config("qm9_symdif")
