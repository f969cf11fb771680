"""Trained models that are not workdirs: the shipped ones and official checkpoints.

    export_workdir("workdirs/qm9_symdiff_cpu", "qm9_symdiff_cpu", "symdiff_jax/pretrained/models")
    run, histogram = pretrained_run("qm9_symdiff_cpu")
    run = official_run("/path/to/official/run")          # needs torch
    samples = evaluate.draw_samples(run, key, 100, histogram=histogram)

`export_workdir` turns the newest intact checkpoint of a QM9 training workdir into a
shipped model (`symdiff_jax.pretrained.export`); `pretrained_run` and `official_run` make
the `RestoredRun` that `experiments.qm9.evaluate` samples and scores, so
`python -m experiments.sample` and `python -m experiments.evaluate` take `--pretrained
NAME` and `--official DIR` besides `--workdir`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from experiments.common.restore import RestoredRun, load_run_or_exit
from experiments.qm9.evaluate import load_run, train_size_histogram, with_compute_dtype
from experiments.qm9.input_pipeline import dataset_of
from symdiff_jax.train import CheckpointError, read_metrics_jsonl
from symdiff_jax.train.state import split_model

#: Where `--pretrained` / `--official` outputs go by default: `workdirs/<name>/`.
OUTPUT_ROOT = "workdirs"


def training_summary(workdir: str, step: int) -> dict[str, Any]:
    """What a workdir recorded up to `step`: the last training loss and validation NLL
    (with their steps) from `metrics.jsonl`, and the `eval/` scores of `metrics.json`."""
    out: dict[str, Any] = {}
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        for record in read_metrics_jsonl(workdir):
            if int(record.get("step", -1)) > step:
                continue
            for name in ("train/loss", "val/nll", "train/steps_per_s"):
                if name in record:
                    out[name] = float(record[name])
                    out[name + "_step"] = int(record["step"])
    path = os.path.join(workdir, "metrics.json")
    if os.path.exists(path):
        with open(path) as f:
            recorded = json.load(f)
        out.update({k: v for k, v in recorded.items() if k.startswith("eval/")})
        for name in ("train_time_s", "wall_time_s"):
            if name in recorded:
                out[name] = recorded[name]
    return out


def export_workdir(
    workdir: str, name: str, out_root: str, checkpoint: str = "latest"
) -> tuple[str, dict[str, Any]]:
    """Writes the EMA parameters of a QM9 training workdir as the shipped model `name`.

    Restores `checkpoint` ("latest": the newest intact step; damaged newer steps are
    skipped with a warning) with `experiments.qm9.evaluate.load_run`, which only reads
    the workdir, and writes `<out_root>/<name>/{params.npz, config.json, metrics.json}`
    atomically (`symdiff_jax.pretrained.write_pretrained`).

    Returns:
      `(directory written, model card)`.
    """
    from symdiff_jax.pretrained import write_pretrained

    run = load_run(workdir, checkpoint)
    dataset = dataset_of(run.config)
    card = {
        "step": run.step,
        "dataset": dataset.name,
        "atom_types": list(dataset.atom_types),
        "num_features": dataset.spec.num_features,
        "train_size_histogram": train_size_histogram(run.config),
        "training": training_summary(workdir, run.step),
    }
    path = write_pretrained(out_root, name, run.params, run.config, card)
    return path, card


def pretrained_run(name: str, models_root: str | None = None) -> tuple[RestoredRun, np.ndarray]:
    """The shipped model `name` as a `RestoredRun` and its training size histogram.

    Raises:
      ValueError: an unknown name (the message lists the available models).
    """
    from symdiff_jax.pretrained import load, read_card
    from symdiff_jax.pretrained.shipped import model_dir

    denoiser, config = load(name, models_root=models_root)
    card = read_card(name, models_root)
    graphdef, params = split_model(denoiser)
    run = RestoredRun(model_dir(name, models_root), config, graphdef, params, int(card["step"]))
    return run, np.asarray(card["train_size_histogram"], np.int64)


def official_run_config(official: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A QM9 run config that samples and scores an official run with our code.

    The official schedule (`polynomial_<power>`, T, precision) becomes `diffusion.*`, the
    sampler takes T steps by default, and the rest (data, evaluation protocol: 10,000
    molecules x 3 runs, test NLL, novelty) is the paper setting of `configs/qm9_symdiff.py`.
    `model` holds the official settings under `kind = "official_<model>"`, which no
    builder of ours takes: the model comes from the checkpoint only.

    Raises:
      ValueError: a run our QM9 pipeline cannot reproduce (another dataset, no hydrogens,
        no charges, or normalisation factors other than QM9's).
    """
    from configs import qm9_common

    config = qm9_common.base("official", kind="symdiff")
    spec = dataset_of(config).spec
    wanted = [1.0, spec.onehot_scale, spec.charge_scale]
    if (
        official.dataset != "qm9"
        or official.remove_h
        or not official.include_charges
        or [float(v) for v in official.normalize_factors] != wanted
    ):
        raise ValueError(
            "Only official QM9 runs with hydrogens, charges and normalize_factors "
            f"{wanted} can be sampled here; got dataset {official.dataset!r}, remove_h="
            f"{official.remove_h}, include_charges={official.include_charges}, "
            f"normalize_factors={list(official.normalize_factors)}."
        )
    power = float(official.schedule_power)
    config.variant = f"official_{official.model}"
    config.model = ml_collections.ConfigDict(
        {**official.to_dict(), "kind": f"official_{official.model}"}
    )
    config.diffusion.schedule = f"polynomial_{int(power) if power.is_integer() else power}"
    config.diffusion.num_steps = int(official.num_steps)
    config.diffusion.precision = float(official.precision)
    config.sample.num_steps = int(official.num_steps)
    return config


def official_run(directory: str, gamma_composition: str = "official") -> RestoredRun:
    """An official SymDiff or EDM QM9 run directory as a `RestoredRun` (needs torch).

    `symdiff_jax.pretrained.load_official` converts the (EMA) weights; the config is
    `official_run_config`. The step is 0 (official checkpoints do not record it).
    """
    from symdiff_jax.pretrained import load_official

    denoiser, official = load_official(directory, gamma_composition=gamma_composition)
    config = official_run_config(official)
    graphdef, params = split_model(denoiser)
    return RestoredRun(directory, config, graphdef, params, 0)


class Source(NamedTuple):
    """The model a sampling or evaluation command runs, and where its outputs go.

    Attributes:
      run: the model (`RestoredRun`).
      histogram: training size counts carried by the model, or None (then
        `train_size_histogram(run.config)` loads the training split).
      out_dir: the workdir, or `workdirs/<name>` for a shipped or official model.
      label: the model as the outputs record it (workdir, `pretrained:<name>`,
        `official:<dir>`).
    """

    run: RestoredRun
    histogram: np.ndarray | None
    out_dir: str
    label: str


def resolve_source(
    workdir: str | None,
    pretrained: str | None,
    official: str | None,
    *,
    checkpoint: str = "latest",
    gamma_composition: str = "official",
    compute_dtype: str | None = None,
    out: str | None = None,
    loader: Callable[[str, str], RestoredRun] = load_run,
) -> Source:
    """The `Source` of exactly one of `--workdir`, `--pretrained`, `--official`.

    `out` replaces the default output directory of a shipped or official model
    (`workdirs/<name>`); a workdir's outputs stay in the workdir.

    Raises:
      ValueError: none or several given, `--checkpoint`, `--compute_dtype` or `out` where
        they do not apply, an unknown shipped model, an unsupported official run.
      FileNotFoundError, CheckpointError, ImportError: from restoring / loading.
    """
    given = {
        k: v
        for k, v in (("--workdir", workdir), ("--pretrained", pretrained), ("--official", official))
        if v
    }
    if len(given) != 1:
        raise ValueError(
            "Give exactly one of --workdir DIR (a training run), --pretrained NAME (a model "
            f"shipped with the package) or --official DIR (an official checkpoint); got "
            f"{sorted(given) or 'none'}."
        )
    if workdir:
        if out:
            raise ValueError(
                f"--out applies to --pretrained and --official models; a workdir's results "
                f"go into the workdir ({workdir}). Got --out={out}."
            )
        run = loader(workdir, checkpoint)
        source = Source(run, None, workdir, os.path.abspath(workdir))
    else:
        if str(checkpoint) != "latest":
            raise ValueError(
                f"--checkpoint applies to --workdir runs only; got --checkpoint={checkpoint} "
                f"with {next(iter(given))}."
            )
        if pretrained:
            run, histogram = pretrained_run(pretrained)
            default = os.path.join(OUTPUT_ROOT, pretrained)
            source = Source(run, histogram, out or default, f"pretrained:{pretrained}")
        else:
            if compute_dtype is not None:
                raise ValueError(
                    "--compute_dtype applies to --workdir and --pretrained models only; got "
                    f"--compute_dtype={compute_dtype} with --official."
                )
            run = official_run(official, gamma_composition)
            name = os.path.basename(os.path.normpath(official))
            default = os.path.join(OUTPUT_ROOT, f"official_{name}")
            source = Source(run, None, out or default, f"official:{os.path.abspath(official)}")
    if compute_dtype is not None:
        source = source._replace(run=with_compute_dtype(source.run, compute_dtype))
    return source


def resolve_source_or_exit(
    workdir: str | None, pretrained: str | None, official: str | None, **kwargs
) -> Source:
    """`resolve_source` for the command lines: a user error prints `error: ...` and exits 1.

    A `--workdir` run is restored through `load_run_or_exit` (its messages; with `writes`,
    the default, the workdir's run lock is held); nothing is written before the model is
    loaded.
    """
    writes = kwargs.pop("writes", True)
    if workdir and not pretrained and not official:
        loader = kwargs.pop("loader", load_run)
        checkpoint = kwargs.pop("checkpoint", "latest")
        kwargs["loader"] = lambda w, c: load_run_or_exit(w, c, loader, writes=writes)
        kwargs["checkpoint"] = checkpoint
    try:
        return resolve_source(workdir, pretrained, official, **kwargs)
    except (FileNotFoundError, ValueError, ImportError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
    sys.exit(1)
