"""Executes the notebooks end to end with tiny settings (nbclient); checks the committed outputs.

Each notebook has one code cell tagged "parameters" holding plain assignments
`NAME = value`. The test replaces the values named in `NOTEBOOKS` with tiny ones
(failing if a name is missing, so the table stays in sync with the notebook),
runs every cell in a fresh kernel from the notebook's directory, and fails on the
first cell that raises. Each notebook opens with a Colab badge and one code cell tagged
"setup": a no-op in a checkout (it moves to the checkout's root), an install elsewhere, which
the slow test exercises in a fresh virtual environment outside any checkout.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap

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


def tagged_cell(nb, tag: str = "parameters"):
    """The code cell tagged `tag`; exactly one must exist."""
    cells = [
        c
        for c in nb.cells
        if c.cell_type == "code" and tag in c.get("metadata", {}).get("tags", [])
    ]
    if len(cells) != 1:
        raise ValueError(f"expected exactly one code cell tagged {tag!r}; found {len(cells)}")
    return cells[0]


def repository_url() -> str:
    """setup.cfg's `url`: the one place the repository's address is declared."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    return parser["metadata"]["url"]


def tiny_notebook(path: str):
    """The notebook at `path` (relative to the repository) with its tiny parameters."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(os.path.join(REPO, path), as_version=4)
    cell = tagged_cell(nb)
    cell.source = override_parameters(cell.source, NOTEBOOKS[path])
    return nb


def cell_errors(nb) -> list:
    return [
        out
        for c in nb.cells
        if c.cell_type == "code"
        for out in c.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def cell_text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []))


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


@pytest.mark.parametrize("path", sorted(NOTEBOOKS))
def test_notebook_opens_in_colab_and_installs_from_the_declared_repository(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(os.path.join(REPO, path), as_version=4)
    url = repository_url()
    owner_repo = url.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{owner_repo}/blob/main/{path}"
    assert nb.cells[0].cell_type == "markdown"
    assert nb.cells[0].source.startswith("[![Open In Colab]("), nb.cells[0].source[:80]
    assert f"]({badge})" in nb.cells[0].source.splitlines()[0]
    setup = tagged_cell(nb, "setup")
    assert f'REPOSITORY = "{url}"' in setup.source
    assert "SYMDIFF_JAX_SOURCE" in setup.source
    # Nothing else depends on the working directory.
    for cell in nb.cells:
        assert "../" not in cell.source, cell.source[:200]


@pytest.mark.notebook
@pytest.mark.parametrize("path", sorted(NOTEBOOKS))
def test_notebook_runs(path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nb = tiny_notebook(path)
    full = os.path.join(REPO, path)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # The kernel inherits the environment: tiny runs compile faster without XLA's passes.
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    # In a checkout the setup cell installs nothing: a source it would copy does not exist.
    monkeypatch.setenv("SYMDIFF_JAX_SOURCE", os.path.join(REPO, "no-such-source"))
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(full)}},
    )
    client.execute()
    assert not cell_errors(nb), cell_errors(nb)
    assert f"symdiff_jax from {REPO}\n" in cell_text(tagged_cell(nb, "setup"))
    assert not os.path.exists(os.path.join(os.path.dirname(full), "symdiff_jax"))


# Executes a notebook in the interpreter that runs this script, from the current directory.
RUN_NOTEBOOK = textwrap.dedent(
    """
    import sys

    import nbclient
    import nbformat

    nb = nbformat.read(sys.argv[1], as_version=4)
    client = nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3")
    try:
        client.execute()
    finally:
        nbformat.write(nb, sys.argv[1])
    """
)


@pytest.mark.slow
@pytest.mark.notebook
def test_quickstart_installs_itself_outside_a_checkout(tmp_path):
    """A fresh venv with only Jupyter, a directory that is not a checkout: the setup cell
    copies the project from $SYMDIFF_JAX_SOURCE (this checkout, standing in for the
    repository URL), pip-installs it, and the notebook runs to the end."""
    nbformat = pytest.importorskip("nbformat")
    path = "notebooks/quickstart.ipynb"
    venv, workdir = tmp_path / "venv", tmp_path / "work"
    workdir.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "nbclient", "nbformat", "ipykernel"]
    subprocess.run(pip, check=True, env=env)
    probe = [python, "-c", "import importlib.util as u; print(u.find_spec('symdiff_jax'))"]
    found = subprocess.run(probe, check=True, env=env, capture_output=True, text=True, cwd=workdir)
    assert found.stdout.strip() == "None"

    notebook = workdir / "quickstart.ipynb"
    nbformat.write(tiny_notebook(path), str(notebook))
    script = tmp_path / "run_notebook.py"
    script.write_text(RUN_NOTEBOOK)
    env.update(
        SYMDIFF_JAX_SOURCE=REPO,
        JAX_PLATFORMS="cpu",
        MPLBACKEND="Agg",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
    )
    result = subprocess.run(
        [python, str(script), str(notebook)], cwd=workdir, env=env, capture_output=True, text=True
    )
    nb = nbformat.read(str(notebook), as_version=4)
    assert result.returncode == 0, result.stderr[-3000:] + json.dumps(cell_errors(nb))[-3000:]
    assert not cell_errors(nb), cell_errors(nb)
    checkout = workdir / "symdiff_jax"
    assert f"symdiff_jax from {checkout}\n" in cell_text(tagged_cell(nb, "setup"))
    where = [python, "-c", "import symdiff_jax; print(symdiff_jax.__file__)"]
    found = subprocess.run(where, check=True, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert found.stdout.strip().startswith(str(checkout)), found.stdout


@pytest.mark.parametrize("path", sorted(NOTEBOOKS))
def test_committed_notebook_carries_its_outputs(path):
    """The code host shows what is committed: every code cell executed, at least one figure,
    no error, no path of the machine that ran it, under 2 MB (scripts/execute_notebooks.py)."""
    full = os.path.join(REPO, path)
    assert os.path.getsize(full) < 2 * 2**20
    with open(full) as f:
        text = f.read()
    assert REPO not in text and os.path.expanduser("~") + os.sep not in text
    nb = json.loads(text)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "a code cell was not executed"
    outputs = [out for c in code for out in c.get("outputs", [])]
    assert any("image/png" in out.get("data", {}) for out in outputs)
    assert not [out for out in outputs if out.get("output_type") == "error"]


def test_execute_notebooks_scrubs_machine_details():
    nbformat = pytest.importorskip("nbformat")
    spec = importlib.util.spec_from_file_location(
        "execute_notebooks", os.path.join(REPO, "scripts", "execute_notebooks.py")
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00"}
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="/m/repo/x and /h/u/.cache\n"),
        nbformat.v4.new_output("stream", name="stderr", text="progress\r"),
        nbformat.v4.new_output("display_data", data={"text/plain": "at /m/repo"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    script.scrub_outputs(nb, [("/m/repo", "<checkout>"), ("/h/u", "~")])
    assert [c.id for c in nb.cells] == ["cell-0", "cell-1"]
    assert "execution" not in cell.metadata
    assert [out.get("name") for out in cell.outputs] == ["stdout", None]
    assert cell.outputs[0]["text"] == "<checkout>/x and ~/.cache\n"
    assert cell.outputs[1]["data"]["text/plain"] == "at <checkout>"
