r"""Executes the notebooks in place with their own parameters and keeps their outputs.

    python scripts/execute_notebooks.py                                  # all of notebooks/
    python scripts/execute_notebooks.py notebooks/qm9_symdiff.ipynb      # one of them

Run it from a checkout with the package installed (`pip install -e ".[qm9,notebooks]"` plus
`nbclient ipykernel`, as in the `test` extra) after a change the notebooks show, such as a
re-exported shipped model (`notebooks/qm9_symdiff.ipynb` samples it). Each notebook runs
top to bottom in a fresh `python3` kernel from its own directory; the first cell that
raises stops it and the file is left unchanged. The written outputs are made
machine-independent where they can be: the checkout's path and the home directory are
replaced by `<checkout>` and `~`, stderr streams (progress bars, library logs) and
execution timestamps are dropped, cell ids are their positions (`cell-<i>`), and figures
are PNGs at the inline backend's default resolution. A notebook above `--max_mb` after
execution is an error.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scrub_text(text: str, replacements: list[tuple[str, str]]) -> str:
    """`text` with each `(old, new)` of `replacements` substituted, in order."""
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def scrub_outputs(nb, replacements: list[tuple[str, str]]) -> None:
    """Drops stderr streams and execution timestamps, substitutes paths in text outputs and
    numbers the cells (`cell-<i>`) in place of random ids."""
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                if out.get("name") == "stderr":
                    continue
                out["text"] = scrub_text(out["text"], replacements)
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    out["data"][mime] = scrub_text(value, replacements)
            if out.get("output_type") == "error":
                out["traceback"] = [scrub_text(t, replacements) for t in out["traceback"]]
            kept.append(out)
        cell["outputs"] = kept


def execute(path: str, timeout: int) -> None:
    """Runs the notebook at `path` and writes it back with its (scrubbed) outputs.

    Raises:
      nbclient.exceptions.CellExecutionError: a cell raised (the file is not written).
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    client.execute()
    home = os.path.expanduser("~")
    scrub_outputs(nb, [(REPO, "<checkout>"), (home, "~")])
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--max_mb", type=float, default=2.0, help="largest notebook written")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))
    too_large = []
    for path in paths:
        start = time.time()
        print(f"{path}: executing ...", flush=True)
        execute(path, args.timeout)
        size = os.path.getsize(path) / 2**20
        print(f"{path}: {time.time() - start:.0f} s, {size:.2f} MB", flush=True)
        if size > args.max_mb:
            too_large.append(f"{path} ({size:.2f} MB)")
    if too_large:
        print(f"error: above {args.max_mb} MB: {', '.join(too_large)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
