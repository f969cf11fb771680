"""`experiments.common.restore`: checkpoint names and the workdir checks."""

import pytest

from experiments.common import restore


@pytest.mark.parametrize(
    "spec, expected",
    [("latest", (False, None)), ("BEST", (True, None)), ("1500", (False, 1500)), (7, (False, 7))],
)
def test_parse_checkpoint(spec, expected):
    assert restore.parse_checkpoint(spec) == expected


@pytest.mark.parametrize("spec", ["newest", "-3", "1.5", ""])
def test_parse_checkpoint_rejects_other_names(spec):
    with pytest.raises(ValueError, match="'latest', 'best' or a step number"):
        restore.parse_checkpoint(spec)


def test_restore_run_names_the_missing_workdir_and_the_command(tmp_path):
    def never(config):
        raise AssertionError("no state to build for a missing workdir")

    with pytest.raises(restore.WorkdirError, match="does not exist.*TRAIN nowhere"):
        restore.restore_run(
            str(tmp_path / "nowhere"),
            "latest",
            experiments=("qm9",),
            abstract_state=never,
            train_command=lambda workdir, config: f"TRAIN {workdir.rsplit('/', 1)[-1]}",
        )


@pytest.mark.parametrize("size", ["", "small", "smoke"])
def test_config_argument_names_the_size_of_the_run(size):
    import configs

    config = configs.get_config("qm9_symdiff", size or None)
    config.seed = 7  # a command-line override changes a key or two, not the size
    expected = "configs/qm9_symdiff.py" + (f":{size}" if size else "")
    assert restore.config_argument("qm9_symdiff", config) == expected
    assert restore.config_argument("qm9_symdiff", None) == "configs/qm9_symdiff.py"
    assert restore.config_argument("no_such_config", config) == "configs/no_such_config.py"


def test_the_train_hint_of_a_smoke_run_without_checkpoints_names_smoke(tmp_path):
    import configs
    from experiments.common.io import write_config
    from experiments.qm9 import evaluate as evaluation

    write_config(str(tmp_path), configs.get_config("qm9_symdiff", "smoke"))
    with pytest.raises(restore.WorkdirError, match=r"--config configs/qm9_symdiff.py:smoke "):
        evaluation.load_run(str(tmp_path))
