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
