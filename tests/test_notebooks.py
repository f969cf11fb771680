"""Executes the notebooks end to end with tiny settings (nbclient).

Each notebook has one code cell tagged "parameters" holding plain assignments
`NAME = value`. The test replaces the values named in `NOTEBOOKS` with tiny ones
(failing if a name is missing, so the table stays in sync with the notebook),
runs every cell in a fresh kernel from the notebook's directory, and fails on the
first cell that raises.
"""

from __future__ import annotations

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# notebook path (relative to the repository) -> tiny parameter values.
NOTEBOOKS = {
    "notebooks/quickstart.ipynb": {
        "NUM_TRAIN_STEPS": 20,
        "BATCH_SIZE": 8,
        "HIDDEN": 8,
        "NUM_LAYERS": 1,
        "NUM_SAMPLES": 16,
        "SAMPLING_STEPS": (10,),
        "NUM_PLOT_SAMPLES": 4,
    },
    "notebooks/conformers.ipynb": {
        "NUM_TRAIN_STEPS": 4,
        "NUM_EVAL_MOLECULES": 1,
        "NUM_CONFORMERS": 2,
        "SAMPLING_STEPS": 4,
        "SIZE": "smoke",
    },
    "notebooks/qm9_symdiff.ipynb": {
        "NUM_TRAIN_STEPS": 4,
        "NUM_SAMPLES": 4,
        "SAMPLING_STEPS": 5,
        "NUM_SHOW": 2,
        "SIZE": "smoke",
    },
}


def parameter_cell(nb):
    """The code cell tagged "parameters"; exactly one must exist."""
    cells = [
        c
        for c in nb.cells
        if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(cells) != 1:
        raise ValueError(f"expected exactly one code cell tagged 'parameters'; found {len(cells)}")
    return cells[0]


def override_parameters(source: str, values: dict) -> str:
    """Replaces the right-hand side of `NAME = ...` lines; every name must occur once."""
    for name, value in values.items():
        pattern = re.compile(rf"^{re.escape(name)}\s*=.*$", re.MULTILINE)
        source, count = pattern.subn(f"{name} = {value!r}", source)
        if count != 1:
            raise ValueError(f"parameter {name} assigned {count} times in the parameters cell")
    return source


def test_override_parameters_replaces_and_checks_names():
    src = "A = 1\nB = (1, 2)  # comment\n"
    assert override_parameters(src, {"B": (3,)}) == "A = 1\nB = (3,)\n"
    with pytest.raises(ValueError, match="C"):
        override_parameters(src, {"C": 1})


@pytest.mark.notebook
@pytest.mark.parametrize("path", sorted(NOTEBOOKS))
def test_notebook_runs(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    full = os.path.join(REPO, path)
    nb = nbformat.read(full, as_version=4)
    cell = parameter_cell(nb)
    cell.source = override_parameters(cell.source, NOTEBOOKS[path])
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # The kernel inherits the environment: tiny runs compile faster without XLA's passes.
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(full)}},
    )
    client.execute()
    errors = [
        out
        for c in nb.cells
        if c.cell_type == "code"
        for out in c.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, errors
