"""What every config file shares: the sizes of a config and their check."""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

# The config argument of the QM9/GEOM and conformer configs: "" (the paper setting, GPU
# scale), "small" (a CPU-sized run of the same recipe), "smoke" (seconds, for tests).
SIZES = ("", "small", "smoke")


def parse_size(arg: str | None, name: str) -> str:
    """The size named by a config argument (None / "" -> ""), checked."""
    size = arg or ""
    if size not in SIZES:
        raise ValueError(
            f"Unknown size {size!r} for {name}; expected one of "
            f"{[s or '(none)' for s in SIZES]} (e.g. configs/{name}.py:small)."
        )
    return size


def resize(
    c: ml_collections.ConfigDict,
    size: str,
    *,
    small: Callable[[ml_collections.ConfigDict], None],
    smoke: Callable[[ml_collections.ConfigDict], None],
) -> ml_collections.ConfigDict:
    """Applies the edits of `size` ("": none, "small", "smoke") to `c` in place; returns `c`."""
    if size == "small":
        small(c)
    elif size == "smoke":
        smoke(c)
    return c
