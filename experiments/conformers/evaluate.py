"""Scoring a trained conformer run, and RDKit's ETKDG on the same molecules.

    run = load_conformer_run("workdirs/qm9_conformers_flow_target_small", "best")
    scores = evaluate_conformer_run(run, jax.random.key(0), num_molecules=200)
    baseline = evaluate_etkdg(run.config, num_molecules=200, mmff=True)

The protocol of the conformer literature (Torsional Diffusion, ETFlow, paper 000 Table 2):
for each test molecule with L reference conformers, generate 2L conformers, and report
COV-R / COV-P (fraction of references / generated conformers within delta of the other
set) and AMR-R / AMR-P (mean over references / generated of the smallest heavy-atom RMSD,
`GetBestRMS`), their mean and median over molecules, at delta = 0.1 and 0.5 Angstrom.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from experiments.common.restore import RestoredRun, config_argument, restore_run
from experiments.conformers.input_pipeline import elements_of
from experiments.conformers.model import abstract_state
from experiments.conformers.sampling import generate_conformers
from symdiff_jax.conformers.datasets import (
    graph_mol,
    load_conformer_data,
    mols_with_positions,
    reference_mols,
)
from symdiff_jax.metrics.conformers import evaluate_molecules, summarise


def evaluation_plan(table, num_molecules: int, per_reference: int) -> tuple[np.ndarray, np.ndarray]:
    """`(molecules scored [M], molecule of each generated conformer [sum 2 C_m])`."""
    total = len(table["num_atoms"])
    chosen = np.arange(min(num_molecules, total) if num_molecules else total)
    counts = np.diff(table["conformer_offsets"])[chosen] * per_reference
    return chosen, np.repeat(chosen, counts)


def score_conformers(
    table,
    chosen: np.ndarray,
    generated: np.ndarray,
    requests: np.ndarray,
    config,
    *,
    progress=False,
) -> tuple[list[dict[str, float]], list[tuple[list, list]]]:
    """Per-molecule COV/AMR of generated conformers against the table's references."""
    pairs = []
    for m in chosen:
        gen = mols_with_positions(table, int(m), generated[requests == m])
        pairs.append((gen, reference_mols(table, int(m))))
    workers = config.evaluate.num_workers
    per_molecule = evaluate_molecules(
        pairs,
        thresholds=tuple(config.evaluate.thresholds),
        num_workers=None if workers < 0 else workers,
        progress=progress,
    )
    return per_molecule, pairs


def write_sdf(path: str, pairs) -> None:
    """Writes the generated conformers of `score_conformers`' pairs to one SDF file."""
    from rdkit import Chem

    with Chem.SDWriter(path) as writer:
        for k, (gen, _) in enumerate(pairs):
            for c, mol in enumerate(gen):
                mol.SetProp("_Name", f"molecule_{k}_conformer_{c}")
                writer.write(mol)


def _train_command(workdir: str, config) -> str:
    variant = config.get("variant", "qm9_conformers_flow") if config is not None else None
    config_arg = (
        config_argument(variant, config) if variant else "configs/qm9_conformers_flow.py:small"
    )
    return f"python -m experiments.train --config {config_arg} --workdir {workdir}"


def load_conformer_run(workdir: str, checkpoint: str | int = "latest") -> RestoredRun:
    """Restores the EMA parameters of a conformer training workdir.

    Raises:
      FileNotFoundError (`WorkdirError`): the workdir, its config.json or its checkpoints
        are missing, or it is not a conformer run.
      ValueError: a malformed `checkpoint`.
      symdiff_jax.train.CheckpointError: a damaged or unknown checkpoint (nothing written).
    """
    return restore_run(
        workdir,
        checkpoint,
        experiments=("conformers",),
        abstract_state=abstract_state,
        train_command=_train_command,
    )


def _prefixed(prefix: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in summary.items()}


def evaluate_conformer_run(
    run: RestoredRun,
    key: jax.Array,
    *,
    num_molecules: int | None = None,
    per_reference: int | None = None,
    num_steps: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    prefix: str = "eval/",
) -> dict[str, Any]:
    """COV/AMR of a trained run on the first `num_molecules` test molecules.

    Defaults come from the run's `config.evaluate` / `config.sample`.
    """
    config = run.config
    ev = config.evaluate
    test = load_conformer_data(config.data, "test", progress=progress)
    chosen, requests = evaluation_plan(
        test,
        ev.num_molecules if num_molecules is None else num_molecules,
        ev.per_reference if per_reference is None else per_reference,
    )
    t0 = time.time()
    generated = generate_conformers(
        run.graphdef,
        run.params,
        key,
        test,
        requests,
        config,
        num_steps=num_steps,
        progress=progress,
    )
    seconds = time.time() - t0
    if num_workers is not None:
        config = config.copy_and_resolve_references()
        with config.unlocked():
            config.evaluate.num_workers = num_workers
    per_molecule, _ = score_conformers(test, chosen, generated, requests, config, progress=progress)
    out = _prefixed(prefix, summarise(per_molecule))
    out[f"{prefix}num_molecules"] = len(chosen)
    out[f"{prefix}generated_conformers"] = len(requests)
    out[f"{prefix}generate_s"] = seconds
    out[f"{prefix}seconds_per_conformer"] = seconds / max(len(requests), 1)
    return out


def evaluate_etkdg(
    config,
    *,
    num_molecules: int | None = None,
    per_reference: int | None = None,
    mmff: bool = True,
    seed: int = 0,
    num_workers: int | None = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """RDKit ETKDGv3 (+ MMFF94) conformers for the same test molecules, same scoring.

    Returns keys `etkdg[_mmff]/<metric>` (mean and median over molecules), the generation
    time, and the number of molecules ETKDG could not embed.
    """
    from symdiff_jax.conformers.etkdg import etkdg_baseline

    ev = config.evaluate
    test = load_conformer_data(config.data, "test", progress=progress)
    chosen, _ = evaluation_plan(
        test, ev.num_molecules if num_molecules is None else num_molecules, 1
    )
    pairs = [(graph_mol(test, int(m)), reference_mols(test, int(m))) for m in chosen]
    result = etkdg_baseline(
        pairs,
        num_per_reference=ev.per_reference if per_reference is None else per_reference,
        seed=seed,
        mmff=mmff,
        num_workers=num_workers,
        progress=progress,
        thresholds=tuple(ev.thresholds),
    )
    prefix = "etkdg_mmff/" if mmff else "etkdg/"
    out = _prefixed(prefix, {k: v for k, v in result["summary"].items()})
    out[f"{prefix}generate_s"] = float(result["seconds"])
    out[f"{prefix}num_molecules"] = len(chosen)
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in out.items()}


def generate_for_smiles(
    run: RestoredRun,
    smiles: str,
    num_conformers: int,
    key: jax.Array,
    *,
    num_steps: int | None = None,
) -> list:
    """Conformers of any molecule (given as SMILES) from a trained run, as RDKit Mols.

    The SMILES is read with RDKit, hydrogens added, featurised like the training data
    (its elements must be in the run's element list and its size within
    `config.data.max_atoms`), and `num_conformers` conformers are generated; stereo tags
    of the SMILES are honoured by the parity correction of O(3) models.

    Raises:
      ValueError: an unparsable SMILES, an element the run does not know, or too many atoms.
    """
    from rdkit import Chem

    from symdiff_jax.conformers.datasets import table_from_mols

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit could not parse the SMILES {smiles!r}.")
    mol = Chem.AddHs(mol)
    config = run.config
    table = table_from_mols(
        [mol],
        [np.zeros((1, mol.GetNumAtoms(), 3))],
        elements=elements_of(config),
        max_atoms=int(config.data.max_atoms),
        automorphism_group="none",
        smiles=[smiles],
    )
    molecules = np.zeros(num_conformers, np.int64)
    x = generate_conformers(
        run.graphdef, run.params, key, table, molecules, config, num_steps=num_steps
    )
    return mols_with_positions(table, 0, x)
