"""Checks that a requested output fits in memory before any device work starts."""

from __future__ import annotations

import os
import sys

# Bytes per atom slot of a drawn molecule: positions (3 x float32), atomic number, charge
# (int32) and mask (float32), plus the [max_atoms + 1] float32 size logits of each
# molecule when its size is drawn.
_BYTES_PER_SLOT = 3 * 4 + 4 + 4 + 4
_COPIES = 2  # the arrays and the files' in-memory copies while they are written


def available_bytes() -> int | None:
    """`MemAvailable` of /proc/meminfo, else physical pages free; None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def molecule_sample_bytes(num_samples: int, max_atoms: int) -> int:
    """Host bytes of `num_samples` padded molecules of `max_atoms` slots, all held at once."""
    per_molecule = _COPIES * _BYTES_PER_SLOT * max_atoms + 4 * (max_atoms + 1)
    return int(num_samples) * per_molecule


def check_sample_memory(num_samples: int, max_atoms: int, available: int | None = None) -> None:
    """Refuses a sample count whose molecules do not fit in the memory available now.

    Args:
      num_samples: molecules requested.
      max_atoms: atom slots per molecule (`config.data.max_atoms`).
      available: bytes available; default `available_bytes()` (no check when unknown).

    Raises:
      MemoryError: the estimate exceeds what is available (the message names both and
        what to do).
    """
    available = available_bytes() if available is None else available
    needed = molecule_sample_bytes(num_samples, max_atoms)
    if available is not None and needed > available:
        raise MemoryError(
            f"--num_samples {num_samples} needs about {needed / 2**30:.1f} GiB of memory "
            f"({max_atoms} atom slots per molecule, all held at once), more than the "
            f"{available / 2**30:.1f} GiB available; lower --num_samples, or draw the "
            "molecules in several runs with different --seed and --out."
        )


def exit_unless_fits(num_samples: int, max_atoms: int) -> None:
    """`check_sample_memory` for the command lines: prints `error: ...` and exits with 1."""
    try:
        check_sample_memory(num_samples, max_atoms)
    except MemoryError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
