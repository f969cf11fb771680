"""The named compact groups of the library and the checks of a group name.

"O3", "SO3" act on 3-dimensional points, "O2", "SO2" on planar ones. Every function that
takes a group by name (Haar sampling, gamma kernels, symmetrised targets, equivariance
tests) checks it here, so the names and their dimensions are written once.
"""

from __future__ import annotations

__all__ = ["GROUP_DIMS", "check_group_dimension", "check_group_name"]

#: The named compact groups and the dimension of the points they act on.
GROUP_DIMS: dict[str, int] = {"O3": 3, "SO3": 3, "O2": 2, "SO2": 2}


def check_group_name(group: str, alternatives: str = "") -> int:
    """Checks that `group` names a compact group; returns the dimension it acts on.

    Args:
      group: "O3", "SO3", "O2" or "SO2".
      alternatives: the caller's other accepted values, appended to the error
        message (e.g. "or None (permutations only)").

    Returns:
      `d`, the dimension of the points the group acts on.

    Raises:
      ValueError: an unknown name.
    """
    if group not in GROUP_DIMS:
        extra = f" {alternatives}" if alternatives else ""
        raise ValueError(f"Unknown group {group!r}; expected one of {sorted(GROUP_DIMS)}{extra}.")
    return GROUP_DIMS[group]


def check_group_dimension(group: str, shape: tuple[int, ...]) -> int:
    """Checks that `group` acts on points of the last axis of `shape` `[..., N, d]`.

    Args:
      group: a name of `GROUP_DIMS`.
      shape: the shape of the positions.

    Returns:
      `d`.

    Raises:
      ValueError: an unknown name, or positions that are not `[..., N, d]` with the
        group's `d`.
    """
    dim = check_group_name(group)
    if len(shape) < 2 or shape[-1] != dim:
        raise ValueError(
            f"group {group!r} acts on points of dimension {dim}, so the positions must have "
            f"shape [..., N, {dim}]; got shape {tuple(shape)}."
        )
    return dim
