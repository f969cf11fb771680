"""Loads the golden fixtures written by `scripts/official_golden.py` from the official code."""

from __future__ import annotations

import os

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


class Golden(dict):
    """One fixture: `state` (official name -> array), `cfg` (settings), `inp`, `out`."""

    def part(self, prefix: str) -> dict:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.items() if k.startswith(prefix + "/")}

    @property
    def state(self) -> dict:
        return self.part("param")

    @property
    def cfg(self) -> dict:
        return {k: v.item() for k, v in self.part("cfg").items()}

    @property
    def inp(self) -> dict:
        return self.part("in")

    @property
    def out(self) -> dict:
        return self.part("out")


def load_golden(name: str) -> Golden:
    with np.load(os.path.join(FIXTURES, name + ".npz")) as data:
        golden = Golden({k: data[k] for k in data.files})
    assert len(str(golden["meta/symdiff_commit"])) == 40
    assert len(str(golden["meta/edm_commit"])) == 40
    return golden


def assert_close(ours, theirs, rtol: float = 1e-5) -> None:
    """Equal to `rtol` relative to the largest magnitude of the official output."""
    theirs = np.asarray(theirs, np.float64)
    ours = np.asarray(ours, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = max(float(np.max(np.abs(theirs))), 1e-30)
    err = float(np.max(np.abs(ours - theirs))) / scale
    assert err <= rtol, f"relative error {err:.3e} > {rtol:.0e}"


@pytest.fixture
def golden():
    return load_golden


@pytest.fixture
def close():
    return assert_close
