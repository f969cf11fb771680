"""The flags that name a model other than a workdir, shared by the QM9 command lines."""

from __future__ import annotations

from absl import flags


def define_model_flags():
    """Defines `--pretrained`, `--official` and `--gamma_composition`; returns their holders.

    `experiments.qm9.pretrained.resolve_source` turns them (with `--workdir`) into a model.
    """
    pretrained = flags.DEFINE_string(
        "pretrained", None, "A model shipped with the package (e.g. qm9_symdiff_cpu)."
    )
    official = flags.DEFINE_string("official", None, "An official SymDiff/EDM run directory.")
    gamma_composition = flags.DEFINE_enum(
        "gamma_composition",
        "official",
        ["official", "paper"],
        "--official SymDiff runs: the learned gamma as the official sampler composes it, or "
        "as paper 002 eq. 7 does.",
    )
    return pretrained, official, gamma_composition
