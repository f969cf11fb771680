"""The shared part of the QM9/GEOM generation configs (SymDiff paper 002, Tables 1-3).

Each `configs/qm9_<variant>.py` calls `base(variant, kind)`, sets what its variant
changes, then `apply_size(config, size)`. Keys spelled the same in every config of the
repository: `diffusion.schedule` (a name of `symdiff_jax.diffusion.get_schedule`) with
`diffusion.num_steps` (T) and `diffusion.precision`; `diffusion.x_target` ("data" or
"symmetrised") with `diffusion.target_group`; `generator` is "diffusion" or
"flow_matching" (then `diffusion.sigma_min` is the path width and the schedule is unused).

Variants (`model.kind`, what is trained):
  dit            a plain DiT eps-network (no symmetrisation)             paper "DiT"
  dit_aug        the same DiT with Haar O(3) data augmentation           paper "DiT-Aug"
  symdiff_h      the DiT symmetrised with gamma = Haar                   paper "SymDiff-H"
  symdiff        the DiT symmetrised with the learned gamma              paper "SymDiff"
  symdiff_star   SymDiff with a 115.6M-parameter eps-network             paper "SymDiff*"
  edm            EDM's EGNN (9 layers, 256 features)                     paper "EDM"
  symdiff_target SymDiff trained towards the exact own-orbit O(3)
                 symmetrised target (eps form; paper 000 on paper 002)   (new)
  symdiff_flow   SymDiff as a flow-matching velocity (appendix E.2)      (new)

Sizes (the config argument, `configs/qm9_<variant>.py:<size>`): None / "" is the paper
setting (GPU scale), "small" a CPU-sized run of the same recipe, "smoke" seconds for tests.

Facts (paper 002 appendix B-C and its official code): eps-network 384 x 12 layers x 6
heads, node embedding 184, distance embedding 200, K = 184 Gaussians; gamma trunk
128 x 8 x 4, decoder 64, m_noise 3; SymDiff* 768 x 12 x 12 with gamma 216 x 10 x 8;
AdamW, lr 2e-4 (SymDiff* 1e-4), weight decay 1e-12, batch 256, 4350 epochs; EDM's
polynomial_2 schedule with T = 1000; EMA 0.9999. EDM (Hoogeboom et al., 2022): EGNN
256 x 9, attention, tanh, coords_range 15, sum aggregation, normalisation factor 1;
its README's QM9 command: lr 1e-4, batch 64, 3000 epochs, EMA 0.9999; AdamW (AMSGrad,
weight decay 1e-12) in its code. EDM clips gradients adaptively; we clip at 2.0.
"""

from __future__ import annotations

import ml_collections

from configs.common import resize

VARIANTS = (
    "dit",
    "dit_aug",
    "symdiff_h",
    "symdiff",
    "symdiff_star",
    "edm",
    "symdiff_target",
    "symdiff_flow",
)

# QM9 train split: 100,000 molecules; 4350 epochs at batch 256 (paper 002, C.2.2).
PAPER_STEPS = 4350 * (100_000 // 256)
# QM9 batches per epoch at EDM's batch 64.
EDM_STEPS_PER_EPOCH = 100_000 // 64


def _model(kind: str) -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.kind = kind
    m.group = "O3"
    # eps_theta (DiT).
    m.hidden = 384
    m.depth = 12
    m.heads = 6
    m.mlp_ratio = 4.0
    m.node_embed = 184
    m.num_gaussians = 184
    m.mlp = "swiglu"
    # "bfloat16": the DiT matmuls (eps_theta and f_theta) in bf16 with float32 weights,
    # accumulation, norms and softmax (mixed precision for GPUs/TPUs, and for CPUs with
    # AVX-512 BF16, where it samples about 1.4x faster). "float32": full precision.
    m.compute_dtype = "float32"
    # f_theta of the learned gamma.
    m.gamma = ml_collections.ConfigDict()
    m.gamma.hidden = 128
    m.gamma.depth = 8
    m.gamma.heads = 4
    m.gamma.mlp_ratio = 4.0
    m.gamma.decoder_hidden = 64
    m.gamma.noise_dims = 3
    m.gamma.share_distance_embedding = True
    # EDM's EGNN.
    m.egnn = ml_collections.ConfigDict()
    m.egnn.hidden = 256
    m.egnn.num_layers = 9
    m.egnn.inv_sublayers = 1
    m.egnn.attention = True
    m.egnn.tanh = True
    m.egnn.coords_range = 15.0
    m.egnn.norm_constant = 1.0
    m.egnn.aggregation = "sum"
    m.egnn.normalization_factor = 1.0
    return m


def base(variant: str, kind: str) -> ml_collections.ConfigDict:
    """The paper-scale config every variant starts from; `kind` is its `model.kind`."""
    c = ml_collections.ConfigDict()
    c.experiment = "qm9"
    c.variant = variant
    c.generator = "diffusion"  # or "flow_matching" (paper 002, appendix E.2)
    c.seed = 0
    c.num_train_steps = PAPER_STEPS
    c.batch_size = 256
    c.init_from = ""  # a workdir (or its checkpoints/) of a `dit` run: its DiT becomes eps_theta
    c.freeze_eps = False  # with init_from: train only gamma (paper 002's DiT-FT-Freeze)
    # Shard parameters, optimizer state and EMA over the devices (FSDP-style) instead of
    # replicating them; batches are always sharded on the mesh's "data" axis.
    c.train_fsdp = False

    c.model = _model(kind)

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "qm9"  # or "geom_drugs" (experiments.qm9.input_pipeline)
    c.data.source = ""  # "" = the qm9pack wheel; or an EDM npz directory / GDB-9 tarball
    c.data.cache_dir = ""  # "" = ~/.cache/symdiff_jax/qm9
    c.data.max_train = 0  # 0 = the whole train split; else the first k (of a fixed shuffle)
    c.data.max_valid = 2000  # molecules used for the periodic validation NLL
    # Pad each batch (in training and sampling) to the smallest of these sizes that holds
    # it: one compilation per size, and the mean padded width of QM9's training split
    # drops from 29 to 19.5 atoms (the best four widths for its size histogram; a mean
    # of 18.0 atoms is the floor). () pads every batch to max_atoms.
    c.data.bucket_sizes = (16, 19, 23, 29)
    c.data.max_atoms = 29

    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.schedule = "polynomial_2"
    c.diffusion.num_steps = 1000
    c.diffusion.precision = 1e-5
    c.diffusion.x_target = "data"
    c.diffusion.target_group = "O3"
    c.diffusion.augment_group = ""  # "O3": Haar data augmentation (DiT-Aug)

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 2e-4
    c.optim.weight_decay = 1e-12
    c.optim.amsgrad = True
    c.optim.clip_norm = 2.0
    c.optim.warmup_steps = 0
    c.optim.ema_decay = 0.9999
    c.optim.ema_warmup = True

    c.train = ml_collections.ConfigDict()
    c.train.log_every = 100
    c.train.eval_every = 20_000
    c.train.checkpoint_every = 5_000
    c.train.keep_checkpoints = 3
    c.train.sample_every = 0  # 0: only at the end
    c.train.num_progress_samples = 256
    c.train.progress_bar = True

    c.sample = ml_collections.ConfigDict()
    c.sample.num_steps = 1000
    c.sample.sampler = "ancestral"
    c.sample.batch_size = 256

    c.evaluate = ml_collections.ConfigDict()
    c.evaluate.num_samples = 10_000  # per run (paper: 10,000 x 3 runs)
    c.evaluate.num_runs = 3
    c.evaluate.test_nll = True
    c.evaluate.max_test = 0  # 0 = the whole test split for NLL
    c.evaluate.novelty = True
    c.evaluate.write_files = True

    return c


def _small(c: ml_collections.ConfigDict) -> None:
    """A CPU-sized run of the same recipe (minutes on 2 cores)."""
    m = c.model
    m.hidden, m.depth, m.heads, m.node_embed, m.num_gaussians = 96, 4, 4, 48, 48
    m.gamma.hidden, m.gamma.depth, m.gamma.heads, m.gamma.decoder_hidden = 48, 2, 4, 32
    m.egnn.hidden, m.egnn.num_layers = 64, 4
    c.num_train_steps = 2000
    c.batch_size = 64
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 100
    c.optim.ema_decay = 0.999
    c.data.max_valid = 512
    c.data.bucket_sizes = ()  # one compilation: on 2 CPU cores it costs more than padding
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    c.train.num_progress_samples = 64
    c.sample.num_steps = 500
    c.sample.batch_size = 250
    c.evaluate.num_samples = 500
    c.evaluate.num_runs = 1
    c.evaluate.max_test = 1000


def _smoke(c: ml_collections.ConfigDict) -> None:
    """Seconds: tiny networks, a handful of steps, a few samples."""
    m = c.model
    m.hidden, m.depth, m.heads, m.node_embed, m.num_gaussians = 32, 1, 2, 16, 8
    m.gamma.hidden, m.gamma.depth, m.gamma.heads, m.gamma.decoder_hidden = 16, 1, 2, 8
    m.egnn.hidden, m.egnn.num_layers = 16, 2
    c.num_train_steps = 4
    c.batch_size = 8
    c.optim.learning_rate = 1e-3
    c.optim.ema_decay = 0.99
    c.data.max_train = 64
    c.data.max_valid = 16
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.checkpoint_every = 2
    c.train.keep_checkpoints = 2
    c.train.num_progress_samples = 4
    c.train.progress_bar = False
    c.data.bucket_sizes = ()
    c.sample.num_steps = 10
    c.sample.batch_size = 8
    c.evaluate.num_samples = 8
    c.evaluate.num_runs = 1
    c.evaluate.max_test = 16
    c.evaluate.novelty = False


def apply_size(c: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
    """Scales a paper-setting config down to `size` ("", "small" or "smoke")."""
    return resize(c, size, small=_small, smoke=_smoke)
