"""The application: four command lines, one run skeleton, one folder per experiment family.

    python -m experiments.train      # train + evaluate a config (configs/default.py)
    python -m experiments.sample     # draw molecules from a trained QM9/GEOM run
    python -m experiments.evaluate   # score a trained run as its paper does
    python -m experiments.benchmark  # time a QM9/GEOM config's steps

`common/` holds what every run shares (workdir IO, runtime flags, the model state, the
train-and-evaluate skeleton, restoring a run); `qm9/`, `conformers/`, `toys/toy_1d/` and
`toys/toy_2d/` each hold `train.py` (`run(config, workdir)`), `model.py`, `evaluate.py`
and, where they have them, `input_pipeline.py`, `sampling.py`, `benchmark.py` and
`plots.py`.
"""
