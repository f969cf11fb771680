# COMMAND: python -m experiments.train
"""The main job: a small SymDiff on QM9 with hydrogens, trained, sampled and scored on a CPU.

`configs/qm9_symdiff.py:small` (a 0.75M-parameter SymDiff: DiT 96 x 4 layers, learned
gamma 48 x 2 layers) trained for 2,500 steps of 64 molecules (about 1.6 epochs of
QM9, ~10 minutes on 2 CPU cores), then 256 molecules sampled with 250 ancestral steps
and scored with EDM's atom/molecule stability and RDKit validity and uniqueness. Writes
`workdirs/default/metrics.json`, checkpoints, `metrics.jsonl`, TensorBoard events and
`samples/` (npz, SDF, xyz files, `samples.png`).

This is a demonstration of the full pipeline at CPU scale, not the paper's result: the
paper trains a 31.2M-parameter model for 1.7M steps on a GPU (`configs/qm9_symdiff.py`).

Variants: `configs/default.py:smoke` (seconds).
"""

from configs import qm9_symdiff


def get_config(arg=None):
    variant = arg or "main"
    if variant not in ("main", "smoke"):
        raise ValueError(f"Unknown variant {variant!r} of configs/default.py; use smoke.")
    if variant == "smoke":
        return qm9_symdiff.get_config("smoke")
    config = qm9_symdiff.get_config("small")
    config.num_train_steps = 2500
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.sample.num_steps = 250
    config.sample.batch_size = 256
    config.evaluate.num_samples = 256
    config.evaluate.max_test = 0
    return config
