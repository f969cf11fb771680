"""The shared part of the many-particle configs (DW4, LJ13; paper 002, appendix E).

`configs/dw4.py` and `configs/lj13.py` call `get(system, arg)`. The argument names a
variant, optionally followed by `,smoke` (seconds, for tests) — e.g. `symdiff`,
`symdiff_score_target`, `egnn_flow,smoke`; `smoke` alone is the default variant's smoke run.

Variants (`model.kind`, generator):
  egnn_flow   the literature's EGNN (32 hidden x 3 layers), intrinsically E(d)-equivariant,
              flow matching (deterministic: exact NLL)
  symdiff     a DiT symmetrised with the learned gamma (paper 002, eq. 7), flow matching
  symdiff_h   the same DiT symmetrised with gamma = Haar (SymDiff-H)
  dit_aug     the plain DiT trained with a random O(d) rotation of each data point
  dit         the plain DiT (S_N-equivariant only)
  <v>_score   the SymDiff variants with score matching (appendix E.1, VP SDE)
  <v>_target  paper 000's symmetrised target (`diffusion.x_target = "symmetrised"`)
  (none)      `DEFAULT_VARIANT`, the best SymDiff variant of the DW4 comparison
              (docs/results.md), trained for `train.time_budget_s` = 30 minutes.

Keys spelled as in every config of the repository: `diffusion.schedule` names the
generative process ("linear": the flow-matching path `x_t = (1 - (1 - s) t) x0 + t x1`;
"vp"/"ve": the SDE of `symdiff_jax.score_matching.get_sde`); `diffusion.x_target` is
"data" or "symmetrised". `data.reference`: a folder of the published splits
(`symdiff_jax.systems.load_reference_split`); when set, the final metrics are against its
test split, otherwise against our Metropolis test split.

Facts: EGNN 32 x 3 and the Euler/limited-budget flow-matching setting follow Klein,
Kraemer & Noe (2023), "Equivariant flow matching", section 6 (DW4/LJ13: EGNN with 32
hidden features and 3 layers; their batch size 256, lr 5e-4).
"""

from __future__ import annotations

import ml_collections

KINDS = ("egnn", "symdiff", "symdiff_h", "dit")
BASE_VARIANTS = {
    "egnn_flow": ("egnn", False),
    "symdiff": ("symdiff", False),
    "symdiff_h": ("symdiff_h", False),
    "dit_aug": ("dit", True),
    "dit": ("dit", False),
}
SCORE_VARIANTS = ("symdiff", "symdiff_h")
# The best flow-matching SymDiff variant of the DW4 comparison (docs/results.md): lowest
# `distance_tv` of the SymDiff variants and `energy_w2` within a standard deviation of the
# best, at a quarter of the score variants' sampling time.
DEFAULT_VARIANT = "symdiff_h_target"


def variants() -> list[str]:
    """Every variant name a particle config accepts (without the `,smoke` suffix)."""
    names = []
    for base in BASE_VARIANTS:
        for score in ("", "_score") if base in SCORE_VARIANTS else ("",):
            names += [base + score, base + score + "_target"]
    return names


def parse_variant(name: str) -> tuple[str, bool, str, str]:
    """`name` -> `(kind, augment, generator, x_target)`; a one-line error if unknown."""
    rest, target = (
        (name[: -len("_target")], "symmetrised") if name.endswith("_target") else (name, "data")
    )
    rest, generator = (
        (rest[: -len("_score")], "score") if rest.endswith("_score") else (rest, "flow")
    )
    if rest not in BASE_VARIANTS or (generator == "score" and rest not in SCORE_VARIANTS):
        raise ValueError(
            f"Unknown particle variant {name!r}; expected one of {variants()} (or 'smoke')."
        )
    kind, augment = BASE_VARIANTS[rest]
    return kind, augment, generator, target


def _model(dim: int) -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.kind = "symdiff"
    m.augment = False  # dit_aug: a Haar O(d) rotation of every training point
    m.egnn = ml_collections.ConfigDict({"hidden": 32, "num_layers": 3})
    m.hidden, m.depth, m.heads, m.mlp_ratio = 64, 3, 4, 4.0
    m.node_embed, m.num_gaussians, m.mlp = 32, 32, "swiglu"
    m.gamma = ml_collections.ConfigDict(
        {
            "hidden": 32,
            "depth": 1,
            "heads": 2,
            "mlp_ratio": 2.0,
            "decoder_hidden": 32,
            "noise_dims": dim,
        }
    )
    return m


def get(system: str, arg: str | None) -> ml_collections.ConfigDict:
    """The config of `system` ("dw4" or "lj13") for the argument `arg` (see the module doc)."""
    parts = [p for p in (arg or "").split(",") if p]
    smoke = "smoke" in parts
    parts = [p for p in parts if p != "smoke"]
    if len(parts) > 1:
        raise ValueError(f"Give one variant, optionally with ',smoke'; got {arg!r}.")
    name = parts[0] if parts else DEFAULT_VARIANT
    kind, augment, generator, target = parse_variant(name)
    dim = {"dw4": 2, "lj13": 3}[system]

    c = ml_collections.ConfigDict()
    c.experiment = "particles"
    c.system = system
    c.variant = f"{system}_{name}" if parts else system
    c.seed = 0
    c.num_train_steps = 1_000_000  # the time budget stops it
    c.batch_size = 256
    c.generator = generator
    c.model = _model(dim)
    c.model.kind, c.model.augment = kind, augment

    c.data = ml_collections.ConfigDict()
    c.data.cache_dir = ""  # "" = $SYMDIFF_JAX_DATA or ~/.cache/symdiff_jax/particles
    c.data.split_seed = 0  # seed of the Metropolis splits
    c.data.sizes = ""  # "" = 100000/10000/10000; "train,val,test" for small data
    c.data.sampling = ""  # "" = the system's settings; "chains,burn_in,thin" otherwise
    c.data.scale = 1.0  # positions are divided by this for training, multiplied back after
    c.data.reference = ""  # folder of the published splits: final metrics on its test split

    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.schedule = "linear" if generator == "flow" else "vp"
    c.diffusion.x_target = target
    c.diffusion.sigma_min = 0.0  # flow path width at t = 1
    c.diffusion.t_min = 1e-3 if generator == "score" else 0.0
    c.diffusion.t_max = 0.999 if target == "symmetrised" else 1.0

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 5e-4
    c.optim.weight_decay = 0.0
    c.optim.amsgrad = False
    c.optim.clip_norm = 1.0
    c.optim.warmup_steps = 100
    c.optim.ema_decay = 0.999
    c.optim.ema_warmup = True

    c.train = ml_collections.ConfigDict()
    c.train.time_budget_s = 1800.0
    c.train.budget_clock = "wall"  # or "cpu": CPU seconds of the process (equal compute)
    c.train.log_every = 200
    c.train.eval_every = 2000
    c.train.checkpoint_every = 2000
    c.train.keep_checkpoints = 2
    c.train.progress_bar = False
    c.train.val_batches = 4

    c.sample = ml_collections.ConfigDict()
    c.sample.num_steps = 100 if generator == "flow" else 500
    c.sample.batch_size = 1000

    c.evaluate = ml_collections.ConfigDict()
    c.evaluate.num_samples = 10_000
    c.evaluate.nll_samples = 1000  # deterministic flows (egnn_flow): exact-divergence NLL
    c.evaluate.nll_steps = 50
    c.evaluate.write_plots = True
    if smoke:
        _smoke(c)
    return c


def _smoke(c: ml_collections.ConfigDict) -> None:
    """Seconds: tiny networks and data, a few steps, a few samples."""
    m = c.model
    m.egnn.hidden, m.egnn.num_layers = 8, 1
    m.hidden, m.depth, m.heads, m.node_embed, m.num_gaussians = 16, 1, 2, 8, 8
    m.gamma.hidden, m.gamma.decoder_hidden = 8, 8
    c.num_train_steps = 4
    c.batch_size = 8
    c.data.sizes = "64,16,16"
    c.data.sampling = "16,200,20"
    c.train.time_budget_s = 0.0
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.checkpoint_every = 2
    c.train.val_batches = 1
    c.sample.num_steps = 4
    c.sample.batch_size = 8
    c.evaluate.num_samples = 16
    c.evaluate.nll_samples = 4
    c.evaluate.nll_steps = 4
