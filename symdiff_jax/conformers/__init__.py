"""Graph-conditioned conformer generation with the symmetrised target (paper 000, section 4.2).

Modules:
  graphs      molecular graphs as padded arrays: features, bond types, Aut(G) tables,
              `ConformerGraph` (the condition of a conformer network)
  qm9_conformers  QM9's molecules as a conformer benchmark: SMILES graph onto the DFT geometry
  datasets    qm9_conformers / GEOM tables, batches with automorphisms and target banks
  prior       the harmonic prior of the bond graph, Kabsch coupling
  objectives  flow matching and diffusion losses with the data or the symmetrised target
  sampling    flow ODE and reverse-diffusion samplers (one `lax.scan`)
  chirality   signed volumes and the parity correction of O(3) models
  etkdg       RDKit ETKDGv3 (+ MMFF94), the baseline

`objectives` and `sampling` use the networks of `symdiff_jax.models.conformer_nets`; import
them by their full path.
"""

from symdiff_jax.conformers.chirality import chiral_centres, parity_correct, signed_volumes
from symdiff_jax.conformers.graphs import (
    AUTOMORPHISM_GROUPS,
    ConformerGraph,
    atom_feature_names,
    bond_one_hot,
    molecule_arrays,
)
from symdiff_jax.conformers.prior import align_prior, gaussian_prior, harmonic_prior

__all__ = [
    "AUTOMORPHISM_GROUPS",
    "ConformerGraph",
    "align_prior",
    "atom_feature_names",
    "bond_one_hot",
    "chiral_centres",
    "gaussian_prior",
    "harmonic_prior",
    "molecule_arrays",
    "parity_correct",
    "signed_volumes",
]
