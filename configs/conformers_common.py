"""The shared part of the conformer-generation configs (paper 000, section 4.2).

Each `configs/<name>.py` below calls `base(name, source, generator)`, sets its target,
then `apply_size(config, size)`. Keys spelled the same in every config of the repository:
`diffusion.schedule` (a name of `symdiff_jax.diffusion.get_schedule`) with
`diffusion.num_steps` (T) and `diffusion.precision`; `diffusion.x_target` ("data" or
"symmetrised") with `diffusion.target_group`. The `diffusion` group holds the generative
process of either generator (flow matching: `prior`, `path_sigma`, `velocity_form`,
`t_min`, `t_max`; diffusion: the schedule and `prediction`).

Names (generator, target, data):
  qm9_conformers_flow          flow matching, data target         qm9_conformers (offline)
  qm9_conformers_flow_target   flow matching, symmetrised target  qm9_conformers
  qm9_conformers_diff          diffusion, data target             qm9_conformers
  qm9_conformers_diff_target   diffusion, symmetrised target      qm9_conformers
  geom_qm9_flow                flow matching, data target         GEOM-QM9
  geom_qm9_flow_target         flow matching, symmetrised target  GEOM-QM9

Sizes: "" the GPU-scale setting, "small" a CPU-sized run (minutes on 2 cores), "smoke"
seconds for tests. Every other setting is shared between a name and its `_target`
twin, so the pair differs only in the regression target.

Facts (ETFlow, Hassan et al. 2024, `configs/qm9-o3.yaml` of its public code): harmonic
prior with bond weight 1, Kabsch-aligned; path noise s = 0.1; t uniform on
[1e-4, 0.9999]; AdamW, lr 7e-4, weight decay 1e-8, batch 128; 50 Euler steps at
sampling; O(3) model with the parity switched after sampling ("post_hoc"). Paper 000's
code for the symmetrised target: velocity form "two_sided", SO(3) rotations x at most 50
automorphisms that move a heavy atom (here: the exact average, heavy-atom group).
"""

from __future__ import annotations

import ml_collections

from configs.common import resize

NAMES = (
    "qm9_conformers_flow",
    "qm9_conformers_flow_target",
    "qm9_conformers_diff",
    "qm9_conformers_diff_target",
    "geom_qm9_flow",
    "geom_qm9_flow_target",
)


def _model() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.kind = "symdiff"  # "symdiff", "symdiff_h" or "egnn" (models.factory.build_conformer_net)
    m.group = "O3"  # the rotations of the SymDiff symmetrisation
    m.graph = ml_collections.ConfigDict({"hidden": 128, "out": 64, "layers": 3})
    # SymDiff: the DiT f_theta and the learned gamma (paper 002's QM9 sizes).
    m.hidden, m.depth, m.heads, m.mlp_ratio = 384, 12, 6, 4.0
    m.node_embed, m.num_gaussians, m.mlp = 184, 184, "swiglu"
    m.gamma = ml_collections.ConfigDict(
        {
            "hidden": 128,
            "depth": 8,
            "heads": 4,
            "mlp_ratio": 4.0,
            "decoder_hidden": 64,
            "noise_dims": 3,
            "share_distance_embedding": True,
        }
    )
    # EGNN with bond-type edge inputs.
    m.egnn = ml_collections.ConfigDict(
        {
            "hidden": 256,
            "num_layers": 9,
            "inv_sublayers": 1,
            "attention": True,
            "tanh": True,
            "coords_range": 15.0,
            "norm_constant": 1.0,
            "aggregation": "sum",
            "normalization_factor": 1.0,
        }
    )
    return m


def base(name: str, source: str, generator: str) -> ml_collections.ConfigDict:
    """The GPU-scale config of experiment `name` on data `source` with `generator`.

    Args:
      name: the config's name (`config.variant`).
      source: "qm9_conformers" or "geom_qm9" (`data.source`).
      generator: "flow" (flow matching) or "diffusion".
    """
    c = ml_collections.ConfigDict()
    c.experiment = "conformers"
    c.variant = name
    c.seed = 0
    c.num_train_steps = 250_000
    c.batch_size = 128
    c.model = _model()

    c.data = ml_collections.ConfigDict()
    c.data.source = source
    c.data.source_path = ""  # qm9_conformers: "" = the qm9pack wheel
    c.data.geom_dir = ""  # GEOM: folder of the published split.npy / rdkit_folder (converted once)
    c.data.geom_cache_dir = ""  # GEOM: a cache from symdiff_jax.data.geom.convert_to_cache
    c.data.max_conformers = 30  # GEOM: conformers kept per molecule when converting
    c.data.cache_dir = ""  # tables; "" = ~/.cache/symdiff_jax/qm9/conformer_tables
    c.data.max_atoms = 29
    c.data.automorphism_group = "heavy"  # "heavy", "full" or "none" (conformers.graphs)
    # K: automorphism rows per molecule in a batch (larger groups are cut to a subset,
    # counted in the metric train_molecules_group_cut).
    c.data.max_automorphisms = 32
    c.data.bank_size = 1  # 1: own orbit; more: also the molecule's other conformers
    c.data.max_train = 0  # 0 = the whole split
    c.data.max_valid = 512
    c.data.max_test = 1000

    c.generator = generator
    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.x_target = "data"
    c.diffusion.target_group = "O3"  # rotations of the target; "SO3" for a chirality-aware model
    c.diffusion.prior = "harmonic"  # flow matching: "harmonic" or "gaussian"
    c.diffusion.path_sigma = 0.1
    c.diffusion.velocity_form = "two_sided"
    c.diffusion.t_min = 1e-4
    c.diffusion.t_max = 0.9999
    c.diffusion.schedule = "polynomial_2"  # diffusion (EDM's)
    c.diffusion.num_steps = 1000
    c.diffusion.precision = 1e-5
    c.diffusion.prediction = "eps"

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 7e-4
    c.optim.weight_decay = 1e-8
    c.optim.amsgrad = False
    c.optim.clip_norm = 2.0
    c.optim.warmup_steps = 0
    c.optim.ema_decay = 0.999
    c.optim.ema_warmup = True

    c.train = ml_collections.ConfigDict()
    c.train.time_budget_s = 0.0  # > 0: stop training after this much training time
    c.train.budget_clock = "wall"  # or "cpu": CPU seconds of the process (equal compute)
    c.train.log_every = 100
    c.train.eval_every = 5000
    c.train.checkpoint_every = 5000
    c.train.keep_checkpoints = 3
    c.train.progress_bar = True

    c.sample = ml_collections.ConfigDict()
    c.sample.num_steps = 500 if c.generator == "diffusion" else 50
    c.sample.batch_size = 256
    c.sample.parity_correction = True  # O(3) models: mirror conformers with the wrong chirality

    c.evaluate = ml_collections.ConfigDict()
    c.evaluate.num_molecules = 1000  # test molecules scored (0: all of data.max_test)
    c.evaluate.per_reference = 2  # generated conformers per reference conformer
    c.evaluate.thresholds = (0.1, 0.5)
    c.evaluate.num_workers = 0  # RMSD processes; 0: serial; -1: all cores
    c.evaluate.write_files = True
    c.evaluate.measure_overhead = True  # time loss+grad with the data and symmetrised target
    return c


def _small(c: ml_collections.ConfigDict) -> None:
    """Minutes on 2 CPU cores."""
    m = c.model
    m.graph.hidden, m.graph.out, m.graph.layers = 64, 32, 3
    m.egnn.hidden, m.egnn.num_layers = 64, 4
    m.hidden, m.depth, m.heads, m.node_embed, m.num_gaussians = 96, 4, 4, 48, 48
    m.gamma.hidden, m.gamma.depth, m.gamma.heads, m.gamma.decoder_hidden = 48, 2, 4, 32
    c.num_train_steps = 100_000  # the time budget stops it
    c.train.time_budget_s = 600.0
    c.batch_size = 64
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 100
    c.data.max_train = 20_000
    c.data.max_automorphisms = 8  # 99.7% of these molecules' heavy-atom groups fit
    c.data.max_valid = 256
    c.data.max_test = 200
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    c.sample.num_steps = 200 if c.generator == "diffusion" else 50
    c.evaluate.num_molecules = 200


def _smoke(c: ml_collections.ConfigDict) -> None:
    """Seconds: tiny networks, a few steps, a few molecules."""
    m = c.model
    m.graph.hidden, m.graph.out, m.graph.layers = 16, 8, 1
    m.egnn.hidden, m.egnn.num_layers = 16, 2
    m.hidden, m.depth, m.heads, m.node_embed, m.num_gaussians = 32, 1, 2, 16, 8
    m.gamma.hidden, m.gamma.depth, m.gamma.heads, m.gamma.decoder_hidden = 16, 1, 2, 8
    c.num_train_steps = 4
    c.batch_size = 8
    c.optim.learning_rate = 1e-3
    c.data.max_train = 64
    c.data.max_valid = 16
    c.data.max_test = 4
    c.data.max_automorphisms = 8
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.checkpoint_every = 2
    c.train.keep_checkpoints = 2
    c.train.progress_bar = False
    c.sample.num_steps = 4
    c.sample.batch_size = 8
    c.evaluate.num_molecules = 4
    c.evaluate.measure_overhead = False


def apply_size(c: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
    """Scales a GPU-scale config down to `size` ("", "small" or "smoke")."""
    return resize(c, size, small=_small, smoke=_smoke)
