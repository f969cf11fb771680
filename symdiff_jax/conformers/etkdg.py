"""The RDKit baseline for conformer generation: ETKDGv3 distance geometry (+ MMFF94).

ETKDG (Riniker & Landrum 2015; version 3, Wang et al. 2020) embeds a molecular graph in 3D
by distance geometry with experimental torsion-angle preferences and knowledge terms; an
optional MMFF94 force-field minimisation then relaxes each conformer. It is what most users
of conformer generators run day to day, so the conformer benchmarks compare against it
with the same evaluation code (`symdiff_jax.metrics.conformers`) on the same molecules.

The graph handed to ETKDG is a copy of the given Mol with every conformer removed, so no
reference coordinates leak into the baseline. Stereo is whatever the Mol carries: chiral
tags and double-bond stereo are enforced by ETKDG when present (for `qm9_conformers`,
`as_rdkit_mol(data, i, stereo_from_3d=True)` gives the graph with the stereo of the DFT
geometry; the default rebuild has none, and ETKDG then picks a stereoisomer at random).

Everything here is host-side RDKit code; `etkdg_baseline` spreads molecules over CPU
processes like `evaluate_molecules`.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

from symdiff_jax.metrics.conformers import (
    DEFAULT_THRESHOLDS,
    evaluate_molecules,
    metrics_from_rmsd,
    summarise,
)

# Counters reported per molecule by `etkdg_conformers(..., return_info=True)`.
INFO_KEYS = (
    "requested",  # conformers asked for
    "embedded",  # conformers returned
    "random_coords_retries",  # 1 when the useRandomCoords retry ran
    "unenforced_chirality",  # conformers embedded without RDKit's chirality checks
    "embed_failures",  # conformers that could not be embedded (requested - embedded)
    "mmff_skipped",  # conformers not optimised because MMFF94 lacks parameters
    "mmff_not_converged",  # conformers whose MMFF minimisation hit the iteration cap
)


def _name(mol: Any) -> str:
    name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    smiles = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))
    return f"{name} ({smiles})" if name else smiles


# RDKit seed of conformer c in embedding stage k (0: ETKDG, 1: random coordinates, 2...: the
# unenforced rounds): `(seed * _SEED_STRIDE + k * _STAGE_STRIDE) % _SEED_MODULUS + c + 1`.
# Neighbouring user seeds and stages land far apart, so they share no conformer seed.
_SEED_STRIDE = 1_000_003
_STAGE_STRIDE = 100_003
_SEED_MODULUS = 2**31 - 2**24


def _rdkit_seed(seed: int, stage: int) -> int:
    return (int(seed) * _SEED_STRIDE + stage * _STAGE_STRIDE) % _SEED_MODULUS


def _params(
    seed: int,
    num_threads: int,
    max_attempts: int,
    random_coords: bool,
    enforce: bool = True,
    stage: int = 0,
):
    params = rdDistGeom.ETKDGv3()
    # RDKit seeds conformer ci with `(ci + 1) * randomSeed` by default, so randomSeed = 0
    # gives identical conformers; sequential seeds use `randomSeed + ci + 1` instead.
    params.enableSequentialRandomSeeds = True
    params.randomSeed = _rdkit_seed(seed, stage)
    params.numThreads = int(num_threads)
    params.maxIterations = int(max_attempts)
    params.useRandomCoords = bool(random_coords)
    params.enforceChirality = bool(enforce)
    params.clearConfs = False
    return params


# Rounds of the last fallback (chirality checks off, handedness verified afterwards).
_UNENFORCED_ROUNDS = 3


def _embed_unenforced(graph: Any, missing: int, seed: int, num_threads: int, max_attempts: int):
    """Embed without RDKit's chirality checks; keep conformers with the tagged handedness.

    ETKDG's final check that each stereocentre lies inside the volume of its neighbours
    rejects every embedding of some strained cages (a cyclobutane fused to an epoxide),
    although their only geometry has the requested stereo. Here the checks are off and the
    tetrahedral centres are verified afterwards with signed volumes (RDKit's convention,
    `symdiff_jax.conformers.chirality`); conformers of the wrong handedness are dropped.
    """
    from symdiff_jax.conformers.chirality import chiral_centres_from_mol, signed_volumes

    centres, neighbours, signs = chiral_centres_from_mol(graph)
    kept: list[int] = []
    for r in range(_UNENFORCED_ROUNDS):
        if len(kept) >= missing:
            break
        params = _params(seed, num_threads, max_attempts, True, enforce=False, stage=2 + r)
        for cid in rdDistGeom.EmbedMultipleConfs(graph, 2 * (missing - len(kept)), params):
            x = graph.GetConformer(int(cid)).GetPositions()
            ok = np.all(np.sign(np.asarray(signed_volumes(x, centres, neighbours))) == signs)
            if ok and len(kept) < missing:
                kept.append(int(cid))
            else:
                graph.RemoveConformer(int(cid))
    return kept


def etkdg_conformers(
    mol: Any,
    num_conformers: int,
    *,
    seed: int = 0,
    mmff: bool = True,
    num_threads: int = 1,
    max_attempts: int = 0,
    mmff_variant: str = "MMFF94",
    mmff_max_iters: int = 200,
    return_info: bool = False,
) -> list[Any] | tuple[list[Any], dict[str, int]]:
    """Conformers of a molecular graph from RDKit ETKDGv3, optionally MMFF94-minimised.

    Steps: copy `mol` without its conformers; add hydrogens if some are implicit (appended
    after the existing atoms, so the given atoms keep their indices); embed
    `num_conformers` conformers with `rdDistGeom.ETKDGv3()` (RDKit's sequential seeds: conformer
    `c` gets `s + c + 1` with `s` spread out from `seed`, see `_rdkit_seed`); if fewer
    come back, embed the missing ones again from random starting coordinates
    (`useRandomCoords`, a shifted seed); if the molecule has tagged stereocentres and
    some are still missing, embed them with RDKit's chirality checks off and keep only
    conformers whose tagged centres have the right handedness (`_embed_unenforced`; those
    checks reject every embedding of some strained cages); minimise each with MMFF (`mmff_variant`) unless
    `mmff` is False or the force field has no parameters for the molecule (counted, not
    an error). A molecule that cannot be embedded at all gives an empty list and a
    warning; fewer conformers than asked also warn (the message names the molecule).

    Args:
      mol: `rdkit.Chem.Mol` of the graph (explicit hydrogens preferred; conformers it
        carries are ignored). Not modified.
      num_conformers: how many conformers to generate (>= 1).
      seed: random seed, an int >= 0 (same seed, same conformers on the same RDKit build;
        nearby seeds share no conformer).
      mmff: minimise with MMFF after embedding.
      num_threads: threads for embedding and MMFF (RDKit's; 0 = all cores).
      max_attempts: ETKDG `maxIterations`, embedding attempts per conformer (0: RDKit's
        default).
      mmff_variant: "MMFF94" or "MMFF94s".
      mmff_max_iters: iteration cap of each minimisation (RDKit's default 200).
      return_info: also return the counters of `INFO_KEYS`.

    Returns:
      A list of Mols, one conformer each, atoms in the order of `mol` (plus any hydrogens
      that were implicit, at the end), conformer ids 0; with `return_info`, the pair
      `(mols, info)`.

    Raises:
      ValueError: `num_conformers < 1` or an unknown `mmff_variant`.
    """
    if int(num_conformers) < 1:
        raise ValueError(f"num_conformers must be >= 1; got {num_conformers}.")
    if mmff_variant not in ("MMFF94", "MMFF94s"):
        raise ValueError(f"mmff_variant must be 'MMFF94' or 'MMFF94s'; got {mmff_variant!r}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed}.")
    num_conformers = int(num_conformers)
    graph = Chem.Mol(mol)
    graph.RemoveAllConformers()
    if any(a.GetNumImplicitHs() for a in graph.GetAtoms()):
        graph = Chem.AddHs(graph)
    info = dict.fromkeys(INFO_KEYS, 0)
    info["requested"] = num_conformers

    ids = list(
        rdDistGeom.EmbedMultipleConfs(
            graph, num_conformers, _params(seed, num_threads, max_attempts, False)
        )
    )
    missing = num_conformers - len(ids)
    if missing > 0:
        info["random_coords_retries"] = 1
        ids += list(
            rdDistGeom.EmbedMultipleConfs(
                graph, missing, _params(seed, num_threads, max_attempts, True, stage=1)
            )
        )
        missing = num_conformers - len(ids)
        if missing > 0 and any(
            a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED for a in graph.GetAtoms()
        ):
            extra = _embed_unenforced(graph, missing, seed, num_threads, max_attempts)
            info["unenforced_chirality"] = len(extra)
            ids += extra
    info["embedded"] = len(ids)
    info["embed_failures"] = num_conformers - len(ids)

    if mmff and ids:
        if rdForceFieldHelpers.MMFFHasAllMoleculeParams(graph):
            results = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(
                graph,
                numThreads=int(num_threads),
                maxIters=int(mmff_max_iters),
                mmffVariant=mmff_variant,
            )
            info["mmff_not_converged"] = int(sum(1 for flag, _ in results if flag == 1))
        else:
            info["mmff_skipped"] = len(ids)

    if info["embed_failures"]:
        warnings.warn(
            f"ETKDG embedded {len(ids)} of {num_conformers} conformers for molecule "
            f"{_name(mol)}, also after retrying from random coordinates.",
            RuntimeWarning,
            stacklevel=2,
        )
    out = []
    for cid in ids:
        one = Chem.Mol(graph, False, int(cid))
        one.GetConformer().SetId(0)
        out.append(one)
    return (out, info) if return_info else out


def _without_stereo(mols: Sequence[Any]) -> list[Any]:
    """Copies without stereo annotations, for scoring.

    Stereo does not change coordinates, but `Chem.RemoveHs` keeps the hydrogens that define
    a double bond's E/Z label, so a stereo-annotated conformer and a stereo-free reference
    of the same molecule would differ after stripping hydrogens.
    """
    out = []
    for m in mols:
        m = Chem.Mol(m)
        Chem.RemoveStereochemistry(m)
        out.append(m)
    return out


def _embed_job(job: tuple) -> tuple[int, list[bytes], dict[str, int], list[str]]:
    """Worker: one molecule sent as an RDKit binary string; conformers come back the same way."""
    index, graph_bin, num, kwargs = job
    coords = Chem.PropertyPickleOptions.CoordsAsDouble | Chem.PropertyPickleOptions.MolProps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mols, info = etkdg_conformers(Chem.Mol(graph_bin), num, return_info=True, **kwargs)
    return index, [m.ToBinary(coords) for m in mols], info, [str(w.message) for w in caught]


def etkdg_baseline(
    molecules: Sequence[tuple[Any, Sequence[Any]]],
    *,
    num_per_reference: int = 2,
    seed: int = 0,
    mmff: bool = True,
    num_workers: int | None = None,
    progress: bool = True,
    thresholds: Sequence[float] | float = DEFAULT_THRESHOLDS,
    max_attempts: int = 0,
    mmff_variant: str = "MMFF94",
    eval_workers: int | None = None,
) -> dict[str, Any]:
    """ETKDG(+MMFF) conformers for many molecules, scored with COV / AMR.

    For molecule `i` with `L_i` reference conformers, generates
    `K_i = num_per_reference * L_i` conformers (the literature's `K = 2L`) with
    `etkdg_conformers(graph_i, K_i, seed=seed, ...)` (the same seed for every molecule, so
    any one molecule can be reproduced alone), then scores them with
    `symdiff_jax.metrics.conformers.evaluate_molecules` (on copies of generated and
    reference Mols without stereo annotations, see `_without_stereo`). A molecule with no conformer at
    all counts as coverage 0 with AMR NaN (the Torsional Diffusion convention); the AMR
    summary then ignores it (NaN-aware mean / median) and `failures` lists it.

    Args:
      molecules: `[(graph_mol, reference_mols), ...]`; `graph_mol` is an RDKit Mol of the
        graph (its conformers are dropped before embedding), `reference_mols` a list of
        Mols with one conformer each.
      num_per_reference: generated conformers per reference conformer.
      seed: ETKDG random seed.
      mmff: MMFF94 minimisation after embedding.
      num_workers: processes for generation ("spawn" start method); None: `os.cpu_count()`;
        0 or 1: serial in this process.
      progress: tqdm progress bars (generation and evaluation).
      thresholds: coverage thresholds in Angstrom.
      max_attempts, mmff_variant: passed to `etkdg_conformers`.
      eval_workers: processes for the RMSD evaluation (default: `num_workers`).

    Returns:
      `{"per_molecule": [metrics dict per molecule], "summary": summarise(per_molecule)
      (AMR NaN-aware, plus "num_molecules" and "num_failed_molecules"), "seconds":
      generation wall time, "seconds_per_molecule", "seconds_evaluation": RMSD time,
      "failures": {"molecules": [(index, message), ...], counters of INFO_KEYS summed over
      molecules}, "generated": [list of Mols per molecule]}`.

    Raises:
      ValueError: an empty `molecules`, a malformed pair, or `num_per_reference < 1`.
    """
    from tqdm.auto import tqdm

    molecules = list(molecules)
    if not molecules:
        raise ValueError("molecules is empty: pass at least one (graph_mol, references) pair.")
    if int(num_per_reference) < 1:
        raise ValueError(f"num_per_reference must be >= 1; got {num_per_reference}.")
    kwargs = {
        "seed": int(seed),
        "mmff": bool(mmff),
        "num_threads": 1,
        "max_attempts": int(max_attempts),
        "mmff_variant": mmff_variant,
    }
    coords = Chem.PropertyPickleOptions.CoordsAsDouble | Chem.PropertyPickleOptions.MolProps
    jobs, references = [], []
    for index, pair in enumerate(molecules):
        if len(pair) != 2 or not isinstance(pair[0], Chem.Mol):
            raise ValueError(
                f"molecules[{index}] must be a (graph_mol, reference_mols) pair with an RDKit "
                "Mol first."
            )
        refs = [pair[1]] if isinstance(pair[1], Chem.Mol) else list(pair[1])
        if not refs:
            raise ValueError(f"molecules[{index}] has no reference conformers.")
        graph = Chem.Mol(pair[0])
        graph.RemoveAllConformers()
        references.append(refs)
        jobs.append((index, graph.ToBinary(coords), int(num_per_reference) * len(refs), kwargs))

    if num_workers is None:
        num_workers = os.cpu_count() or 1
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0 or None; got {num_workers}.")
    num_workers = min(num_workers, len(jobs))
    generated: list[list[Any] | None] = [None] * len(jobs)
    infos: list[dict[str, int] | None] = [None] * len(jobs)
    messages: list[tuple[int, str]] = []
    bar = tqdm(total=len(jobs), desc="ETKDG", disable=not progress)
    start = time.perf_counter()
    try:

        def collect(result):
            index, mols, info, caught = result
            generated[index] = [Chem.Mol(b) for b in mols]
            infos[index] = info
            messages.extend((index, m) for m in caught)
            bar.update()

        if num_workers <= 1:
            for job in jobs:
                collect(_embed_job(job))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(num_workers) as pool:
                for result in pool.imap_unordered(_embed_job, jobs, chunksize=1):
                    collect(result)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    for index, message in messages:
        warnings.warn(f"molecule {index}: {message}", RuntimeWarning, stacklevel=2)

    ok = [i for i, g in enumerate(generated) if g]
    start = time.perf_counter()
    scored = (
        evaluate_molecules(
            [(_without_stereo(generated[i]), _without_stereo(references[i])) for i in ok],
            thresholds=thresholds,
            num_workers=num_workers if eval_workers is None else eval_workers,
            progress=progress,
        )
        if ok
        else []
    )
    seconds_eval = time.perf_counter() - start
    template = metrics_from_rmsd(np.zeros((1, 1)), thresholds)  # the metric names
    failed = {k: (np.nan if k.startswith("amr") else 0.0) for k in template}
    per_molecule: list[dict[str, float]] = [dict(failed) for _ in jobs]
    for i, metrics in zip(ok, scored, strict=True):
        per_molecule[i] = metrics
    summary = summarise(per_molecule)
    for k in template:
        if k.startswith("amr"):
            values = np.array([d[k] for d in per_molecule], np.float64)
            finite = values[~np.isnan(values)]
            summary[f"{k}_mean"] = float(finite.mean()) if finite.size else float("nan")
            summary[f"{k}_median"] = float(np.median(finite)) if finite.size else float("nan")
    summary["num_molecules"] = len(jobs)
    summary["num_failed_molecules"] = len(jobs) - len(ok)
    failures: dict[str, Any] = {
        k: int(sum(info[k] for info in infos))
        for k in INFO_KEYS  # type: ignore[index]
    }
    failures["molecules"] = messages
    return {
        "per_molecule": per_molecule,
        "summary": summary,
        "seconds": seconds,
        "seconds_per_molecule": seconds / len(jobs),
        "seconds_evaluation": seconds_eval,
        "failures": failures,
        "generated": generated,
    }


__all__ = ["INFO_KEYS", "etkdg_baseline", "etkdg_conformers"]
