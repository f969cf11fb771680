"""Training SymDiff on your own molecules through the CLI: SDF directory, xyz directory, ASE db.

The three sources hold the same 20 small molecules (ETKDG conformers of RDKit), so every
run compiles the same shapes (the persistent compilation cache, shared by the module,
makes the second and third runs cheap).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_helpers import run_cli

SMILES = (
    "C", "N", "O", "CC", "CO", "CN", "C=O", "C#N", "CCO", "CC=O", "OCO", "NCO", "NO", "C=C",
    "C#C", "NN", "COC", "NC=O", "OC=O", "CC#N",
)  # fmt: skip


def _molecules():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    n = 9
    x, z = np.zeros((len(SMILES), n, 3), np.float32), np.zeros((len(SMILES), n), np.int32)
    for b, smi in enumerate(SMILES):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        assert AllChem.EmbedMolecule(mol, randomSeed=b) == 0
        k = mol.GetNumAtoms()
        x[b, :k] = mol.GetConformer().GetPositions()
        z[b, :k] = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return x, z, (z > 0).astype(np.float32)


def _write_source(kind: str, root) -> str:
    from symdiff_jax.data.writers import write_sdf, write_xyz

    x, z, m = _molecules()
    if kind == "sdf_dir":
        path = root / "sdf"
        path.mkdir()
        write_sdf(path / "a.sdf", x[:10], z[:10], m[:10])
        write_sdf(path / "b.sdf", x[10:], z[10:], m[10:])
    elif kind == "xyz_dir":
        path = root / "xyz"
        write_xyz(path, x, z, m)
    else:
        pytest.importorskip("ase")
        from symdiff_jax.data.ase_io import write_ase_db

        path = root / "molecules.db"
        write_ase_db(path, x, z, m)
    return str(path)


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sdf_dir", "xyz_dir", "ase_db"])
def test_smoke_training_on_a_source(tmp_path, jax_cache, kind):
    source = _write_source(kind, tmp_path)
    workdir = tmp_path / "run"
    proc = run_cli(
        "train",
        "--config=configs/molecules.py:smoke",
        f"--config.data.source={source}",
        f"--workdir={workdir}",
        env={"SYMDIFF_JAX_CACHE": jax_cache},
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(workdir / "config.json") as f:
        config = json.load(f)
    # Read from the data: the elements present and the largest molecule (C2H5OH, 9 atoms).
    assert config["data"]["elements"] == "H,C,N,O" and config["data"]["max_atoms"] == 9
    with open(workdir / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["steps"] == 4 and metrics["num_samples"] == 8
    for key in ("atom_stability", "molecule_stability", "validity", "novelty"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
    samples = workdir / "samples"
    assert (samples / "samples.sdf").read_text().count("$$$$") == 8
    assert len(list((samples / "xyz").glob("*.xyz"))) == 8
    assert (samples / "samples.png").stat().st_size > 0
    if kind == "ase_db":
        from symdiff_jax.data.ase_io import read_ase_db

        assert len(read_ase_db(samples / "samples.db")) == 8
