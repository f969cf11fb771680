"""Conformer-generation metrics: coverage (COV) and average minimum RMSD (AMR).

Paper 000 (section 4.2 and appendix C) evaluates generated conformers of a molecular graph
against its ground-truth (CREST) conformers, generating `K = 2L` conformers for `L`
references. With `RMSD(C_l, C_k)` the heavy-atom, symmetry-aware RMSD after optimal
superposition and threshold `delta`:

    COV-R = |{l : exists k, RMSD(C_l, C_k) < delta}| / L      (references recovered)
    COV-P = |{k : exists l, RMSD(C_l, C_k) < delta}| / K      (generated that are good)
    AMR-R = mean_l min_k RMSD(C_l, C_k)
    AMR-P = mean_k min_l RMSD(C_l, C_k)

The comparison is strict (`<`). Per-molecule values are then summarised by their mean and
median over molecules. Paper 000 uses `delta = 0.1` Angstrom on GEOM-QM9; earlier work
uses 0.5 Angstrom (GEOM-QM9) and 0.75 Angstrom (GEOM-Drugs).

Conventions taken from the public evaluation code of that line of work (facts, not code):
- GeoMol / Torsional Diffusion (`gcorso/torsional-diffusion`, `evaluate_confs.py`) and
  ETFlow (`shenoynikhil/ETFlow`, `etflow/commons/covmat.py`; reused by the paper's own
  code, `vinhsuhi/Orbit-Diffusion`, `IEF/etflow/commons/covmat.py`) fill an RMSD matrix of
  shape `[num_ref, num_gen]` with `rdMolAlign.GetBestRMS` on `RemoveHs` copies of both
  molecules, with RDKit's default `maxMatches` (1e6) and default
  `symmetrizeConjugatedTerminalGroups`; coverage uses `min(...) < threshold` (strict), AMR
  the mean of the row / column minima.
- ETFlow and the paper's code call `GetBestRMS(probe=generated, ref=reference)`;
  Torsional Diffusion calls it with the reference as probe. The value is the same up to
  round-off (RMSD is symmetric and the symmetry matches are a group); we follow ETFlow.
- Torsional Diffusion drops reference conformers whose SMILES differs from the molecule's
  and counts molecules with no generated conformers as coverage 0; that data cleaning is
  left to the caller here (mismatched molecules raise).

Everything here is host-side NumPy/RDKit code; `evaluate_molecules` spreads molecules over
CPU processes.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from symdiff_jax.metrics.records import shared_keys

DEFAULT_THRESHOLDS = (0.1, 0.5)


def _threshold_key(t: float) -> str:
    """`0.1 -> "0.1"`, `0.5 -> "0.5"`; the exact repr when `%g` would round the value."""
    short = format(t, "g")
    return short if float(short) == t else repr(float(t))


def _check_thresholds(thresholds: Sequence[float] | float) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence; got {thresholds!r}.")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"thresholds must be finite and >= 0 (Angstrom); got {arr.tolist()}.")
    return arr


def _check_mols(mols: Any, name: str) -> list:
    if isinstance(mols, Chem.Mol):
        raise ValueError(
            f"{name} must be a list of RDKit Mols with one conformer each; got a single Mol. "
            "Wrap it in a list, or split a multi-conformer Mol into one Mol per conformer."
        )
    mols = list(mols)
    if not mols:
        raise ValueError(f"{name} is empty: pass at least one conformer (an RDKit Mol).")
    for i, m in enumerate(mols):
        if not isinstance(m, Chem.Mol):
            raise ValueError(f"{name}[{i}] is a {type(m).__name__}, not an RDKit Mol.")
        if m.GetNumConformers() != 1:
            raise ValueError(
                f"{name}[{i}] has {m.GetNumConformers()} conformers; each Mol must carry "
                "exactly one (split multi-conformer Mols first)."
            )
    return mols


def _graph_key(mol: Any) -> str:
    """Canonical non-isomeric SMILES of the heavy-atom graph (stereo and H ignored)."""
    try:
        heavy = Chem.RemoveHs(mol, sanitize=False)
    except Exception:  # noqa: BLE001 - fall back to the molecule as it is
        heavy = mol
    return Chem.MolToSmiles(heavy, isomericSmiles=False)


def _check_same_molecule(generated: list, references: list) -> None:
    ref_key = _graph_key(references[0])
    for name, mols in (("references", references), ("generated", generated)):
        for i, m in enumerate(mols):
            key = _graph_key(m)
            if key != ref_key:
                raise ValueError(
                    "generated and references must be conformers of one molecule; "
                    f"{name}[{i}] is {key!r} but references[0] is {ref_key!r}."
                )


def _strip(mols: list, heavy_atoms: bool) -> list:
    """Copies without stereo annotations (RMSD needs none; `RemoveHs` would keep the
    hydrogens that define a double bond's E/Z label), hydrogens removed if asked."""
    out = []
    for m in mols:
        m = Chem.Mol(m)
        Chem.RemoveStereochemistry(m)
        out.append(Chem.RemoveHs(m) if heavy_atoms else m)
    return out


def _rmsd_matrix_prepared(gen: list, ref: list, max_matches: int | None) -> np.ndarray:
    kwargs = {} if max_matches is None else {"maxMatches": int(max_matches)}
    out = np.empty((len(ref), len(gen)), np.float64)
    for i, r in enumerate(ref):
        for j, g in enumerate(gen):
            # GetBestRMS leaves the probe aligned: align a fresh copy every time.
            out[i, j] = rdMolAlign.GetBestRMS(Chem.Mol(g), r, **kwargs)
    return out


def rmsd_matrix(
    generated: Sequence[Any],
    references: Sequence[Any],
    *,
    heavy_atoms: bool = True,
    max_matches: int | None = None,
) -> np.ndarray:
    """Symmetry-aware RMSD between every reference and every generated conformer.

    Entry `[l, k]` is `rdMolAlign.GetBestRMS(probe=generated[k], ref=references[l])`: the
    RMSD after the best rigid superposition, minimised over the atom correspondences of the
    molecule's symmetry (RDKit's self substructure matches), computed on hydrogen-stripped
    copies (`Chem.RemoveHs`) when `heavy_atoms`. The inputs are not modified.

    Args:
      generated: `K` RDKit Mols of one molecule, one conformer each.
      references: `L` RDKit Mols of the same molecule, one conformer each.
      heavy_atoms: strip hydrogens first (the standard protocol). With False, hydrogens
        count and symmetry matching can explode combinatorially (`max_matches` caps it).
      max_matches: cap on the atom correspondences RDKit tries; None keeps RDKit's default
        (1,000,000), as the reference evaluation code does.

    Returns:
      `[L, K]` float64 RMSD in the units of the coordinates (Angstrom).

    Raises:
      ValueError: empty inputs, Mols without exactly one conformer, or conformers of
        different molecules (compared by canonical heavy-atom SMILES without stereo).
    """
    generated = _check_mols(generated, "generated")
    references = _check_mols(references, "references")
    _check_same_molecule(generated, references)
    return _rmsd_matrix_prepared(
        _strip(generated, heavy_atoms), _strip(references, heavy_atoms), max_matches
    )


def coverage_curve(rmsd: Any, thresholds: Sequence[float] | float) -> dict[str, np.ndarray]:
    """COV-R and COV-P of one molecule as functions of the threshold.

    Args:
      rmsd: `[L, K]` RMSD matrix (references x generated), e.g. from `rmsd_matrix`.
      thresholds: `[T]` thresholds delta (Angstrom).

    Returns:
      `{"thresholds": [T], "cov_r": [T], "cov_p": [T]}` with
      `cov_r[t] = mean_l [min_k rmsd[l, k] < delta_t]` and
      `cov_p[t] = mean_k [min_l rmsd[l, k] < delta_t]` (strict comparison).
    """
    rmsd = _check_rmsd(rmsd)
    t = _check_thresholds(thresholds)
    best_for_ref = rmsd.min(axis=1)  # [L]
    best_for_gen = rmsd.min(axis=0)  # [K]
    return {
        "thresholds": t,
        "cov_r": np.mean(best_for_ref[None, :] < t[:, None], axis=1),
        "cov_p": np.mean(best_for_gen[None, :] < t[:, None], axis=1),
    }


def _check_rmsd(rmsd: Any) -> np.ndarray:
    rmsd = np.asarray(rmsd, np.float64)
    if rmsd.ndim != 2 or 0 in rmsd.shape:
        raise ValueError(
            f"rmsd must be a non-empty [num_ref, num_gen] matrix; got shape {rmsd.shape}."
        )
    return rmsd


def metrics_from_rmsd(
    rmsd: Any, thresholds: Sequence[float] | float = DEFAULT_THRESHOLDS
) -> dict[str, float]:
    """COV-R/P at each threshold and AMR-R/P from a `[num_ref, num_gen]` RMSD matrix.

    Paper 000, appendix C (COV-P, AMR-P, COV-R, AMR-R).

    Returns:
      `{"cov_r@<t>", "cov_p@<t>" for each threshold t, "amr_r", "amr_p"}` as floats;
      coverages are fractions in [0, 1], AMR in the units of `rmsd`. `<t>` is `t` written
      with `%g` (e.g. `cov_r@0.5`), or its exact repr where `%g` would round it.
    """
    rmsd = _check_rmsd(rmsd)
    curve = coverage_curve(rmsd, thresholds)
    out: dict[str, float] = {}
    for t, cr, cp in zip(curve["thresholds"], curve["cov_r"], curve["cov_p"], strict=True):
        key = _threshold_key(float(t))
        out[f"cov_r@{key}"] = float(cr)
        out[f"cov_p@{key}"] = float(cp)
    out["amr_r"] = float(rmsd.min(axis=1).mean())
    out["amr_p"] = float(rmsd.min(axis=0).mean())
    return out


def conformer_metrics(
    generated: Sequence[Any],
    references: Sequence[Any],
    thresholds: Sequence[float] | float = DEFAULT_THRESHOLDS,
    *,
    max_matches: int | None = None,
) -> dict[str, float]:
    """Coverage and AMR (recall and precision) of generated conformers of one molecule.

    Heavy-atom, symmetry-aware RMSD (`rmsd_matrix`), then `metrics_from_rmsd`.

    Args:
      generated: RDKit Mols of one molecule, one conformer each (usually twice as many as
        references).
      references: RDKit Mols of the same molecule, one conformer each.
      thresholds: coverage thresholds delta in Angstrom (default 0.1 and 0.5).
      max_matches: passed to `GetBestRMS` (None: RDKit's default).

    Returns:
      `{"cov_r@0.1", "cov_p@0.1", "cov_r@0.5", "cov_p@0.5", "amr_r", "amr_p"}` for the
      default thresholds (one `cov_r@t` / `cov_p@t` pair per threshold): coverages as
      fractions, AMR in Angstrom.
    """
    t = _check_thresholds(thresholds)
    return metrics_from_rmsd(rmsd_matrix(generated, references, max_matches=max_matches), t)


def summarise(per_molecule: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and median over molecules of every per-molecule metric.

    Args:
      per_molecule: one dict per molecule with the same keys (e.g. `conformer_metrics`
        outputs); values are numbers (or equally shaped arrays, reduced elementwise).

    Returns:
      `{"<key>_mean": ..., "<key>_median": ...}` for every key, in the order of the first
      dict; scalars come back as floats.
    """
    per_molecule = list(per_molecule)
    keys = shared_keys(per_molecule, "molecule")
    out: dict[str, Any] = {}
    for k in keys:
        values = np.stack([np.asarray(d[k], np.float64) for d in per_molecule])
        mean, median = values.mean(axis=0), np.median(values, axis=0)
        out[f"{k}_mean"] = float(mean) if mean.ndim == 0 else mean
        out[f"{k}_median"] = float(median) if median.ndim == 0 else median
    return out


def _molecule_job(job: tuple) -> tuple[int, dict[str, float]]:
    """Worker: one molecule, its Mols sent as RDKit binary strings (hydrogens stripped)."""
    index, gen_bin, ref_bin, thresholds, max_matches = job
    generated = [Chem.Mol(b) for b in gen_bin]
    references = [Chem.Mol(b) for b in ref_bin]
    try:
        _check_same_molecule(generated, references)
    except ValueError as err:
        raise ValueError(f"pair {index}: {err}") from None
    rmsd = _rmsd_matrix_prepared(generated, references, max_matches)
    return index, metrics_from_rmsd(rmsd, thresholds)


def evaluate_molecules(
    pairs: Sequence[tuple[Sequence[Any], Sequence[Any]]],
    *,
    thresholds: Sequence[float] | float = DEFAULT_THRESHOLDS,
    num_workers: int | None = None,
    progress: bool = True,
    max_matches: int | None = None,
) -> list[dict[str, float]]:
    """`conformer_metrics` for many molecules, spread over CPU processes.

    Each molecule is one job: its conformers are stripped of hydrogens in this process, sent
    to a worker as RDKit binary strings (`Mol.ToBinary`, float64 coordinates), and the worker fills the RMSD
    matrix. Workers are started with the "spawn" method (safe next to a multithreaded JAX
    runtime). Summarise with `summarise(evaluate_molecules(...))`.

    Args:
      pairs: `[(generated, references), ...]`, one pair of Mol lists per molecule.
      thresholds: coverage thresholds (Angstrom).
      num_workers: processes to use; None: `os.cpu_count()`; 0 or 1: run serially here.
      progress: show a tqdm progress bar over molecules.
      max_matches: passed to `GetBestRMS`.

    Returns:
      One `conformer_metrics` dict per pair, in the order of `pairs`.

    Raises:
      ValueError: an empty `pairs`, or a pair with invalid / mismatched conformers (the
        message names the pair's index).
    """
    from tqdm.auto import tqdm

    # RDKit's default binary form (also used by pickle) stores coordinates as float32,
    # which shifts RMSDs by ~1e-8; keep float64 so parallel == serial exactly.
    coords = Chem.PropertyPickleOptions.CoordsAsDouble
    t = _check_thresholds(thresholds)
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs is empty: pass at least one (generated, references) pair.")
    jobs = []
    for index, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(
                f"pairs[{index}] must be a (generated, references) pair; got {len(pair)} items."
            )
        try:
            generated = _check_mols(pair[0], "generated")
            references = _check_mols(pair[1], "references")
        except ValueError as err:
            raise ValueError(f"pair {index}: {err}") from None
        jobs.append(
            (
                index,
                [m.ToBinary(coords) for m in _strip(generated, True)],
                [m.ToBinary(coords) for m in _strip(references, True)],
                t,
                max_matches,
            )
        )
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0 or None; got {num_workers}.")
    num_workers = min(num_workers, len(jobs))
    results: list[dict[str, float] | None] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="conformer RMSD", disable=not progress)
    try:
        if num_workers <= 1:
            for job in jobs:
                index, metrics = _molecule_job(job)
                results[index] = metrics
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(num_workers) as pool:
                for index, metrics in pool.imap_unordered(_molecule_job, jobs, chunksize=1):
                    results[index] = metrics
                    bar.update()
    finally:
        bar.close()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


__all__ = [
    "DEFAULT_THRESHOLDS",
    "conformer_metrics",
    "coverage_curve",
    "evaluate_molecules",
    "metrics_from_rmsd",
    "rmsd_matrix",
    "summarise",
]
