"""Per-run and per-molecule metric records: the check that they report the same metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def shared_keys(records: Sequence[Mapping[str, Any]], what: str = "record") -> list[str]:
    """The metric names of `records`, checked to be the same in every one.

    Args:
      records: one `{metric: value}` mapping per run or per molecule.
      what: how a record is named in the error message (e.g. "run", "molecule").

    Returns:
      The keys of `records[0]`, in its order.

    Raises:
      ValueError: no records, or a record whose keys differ from the first one's.
    """
    if not records:
        raise ValueError(f"need at least one {what} to summarise; got none.")
    keys = list(records[0])
    for i, record in enumerate(records):
        if set(record) != set(keys):
            raise ValueError(
                f"{what} {i} has metrics {sorted(record)} but {what} 0 has {sorted(keys)}; "
                f"every {what} must report the same metrics."
            )
    return keys
