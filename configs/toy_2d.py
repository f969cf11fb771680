# COMMAND: python -m experiments.train --config configs/toy_2d.py --workdir workdirs/toy_2d
"""2D rotation + permutation toy of paper 000 (section 4.1, Fig. 3).

One training sample, four points on a line at (-1, 0), (-0.5, 0), (0.5, 0), (1, 0);
an EGNN denoiser (x0-prediction) on the complete graph, trained with the plain data
target (`baseline`) and with the exact symmetrised target over O(2) x S_4
(`symmetrised`); DDIM sampling with 10, 15, ..., 50 steps; RMSD after the best
rotation / reflection and permutation, averaged over 1000 samples.

Diffusion settings follow the public reference's 1D toy (vinhsuhi/Orbit-Diffusion,
`1D-toy/main.py`): sigma linear in t from 0.01 to 0.999 with alpha = sqrt(1 - sigma^2),
time fed to the network as t in [0, 1], Adam with lr 1e-3 decayed by 0.8 every 8000
steps, batch 100. The public code has no 2D toy; the EGNN size, the number of steps and
the loss weight w(t) = 1 are ours (the 1D code's SNR weight is the variant `snr`).

Keys spelled as in every config: `diffusion.schedule` with `diffusion.sigma_min`/
`sigma_max`, `diffusion.loss_weight` ("snr" or "none"). The targets compared are
`methods` ("baseline" is the data target; the names appear in metric keys).

Variants (`configs/toy_2d.py:<variant>`):
  (none)  the paper protocol: both methods, 1000 samples per step count.
  quick   fewer training steps (a few minutes on a 2-core CPU), same evaluation.
  snr     the default with the public 1D code's loss weight alpha^2 / sigma^2.
  smoke   seconds: a tiny network, a few steps, few samples.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the toy_2d config; `arg` picks a variant (None/"", "quick", "snr", "smoke")."""
    config = ml_collections.ConfigDict()
    config.experiment = "toy_2d"
    config.seed = 0

    # Data: one sample; the group is O(2) (or SO(2)) x permutations of the points.
    config.data = ml_collections.ConfigDict()
    config.data.points = ((-1.0, 0.0), (-0.5, 0.0), (0.5, 0.0), (1.0, 0.0))
    config.group = "O2"
    # "all": every permutation of S_4; "stabiliser" would be redundant here, since
    # averaging over all of S_4 x O(2) counts each orbit point equally often.
    config.permutations = "all"

    config.methods = ("baseline", "symmetrised")

    # Diffusion.
    config.diffusion = ml_collections.ConfigDict()
    config.diffusion.schedule = "linear_sigma"  # or a name for diffusion.get_schedule
    config.diffusion.sigma_min = 0.01
    config.diffusion.sigma_max = 0.999
    # w(t) = 1: the x0-form losses of paper 000 (eqs. 1, 3, 4) as written. The public
    # 1D code weights by the SNR alpha^2 / sigma^2 instead (variant `snr`); on this toy
    # that weighting removes most of the difference between the two targets.
    config.diffusion.loss_weight = "none"  # "none" (w = 1) or "snr" (alpha^2 / sigma^2)
    config.diffusion.com_free = True

    # Denoiser: EGNN, x0-prediction, constant node feature plus time.
    config.model = ml_collections.ConfigDict()
    config.model.hidden = 32
    config.model.num_layers = 4
    config.model.inv_sublayers = 1
    config.model.attention = True
    config.model.tanh = True
    config.model.coords_range = 15.0
    config.model.norm_constant = 1.0
    config.model.aggregation = "sum"
    config.model.normalization_factor = 1.0

    # Training.
    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 20_000
    config.train.batch_size = 100
    config.train.learning_rate = 1e-3
    config.train.lr_decay_every = 8000
    config.train.lr_decay_rate = 0.8
    config.train.chunk = 1000  # steps per jitted lax.scan

    # Sampling and evaluation.
    config.eval = ml_collections.ConfigDict()
    config.eval.num_samples = 1000
    config.eval.sampling_steps = tuple(range(10, 55, 5))
    config.eval.allow_reflection = True
    config.eval.num_plot_samples = 100
    config.eval.plot_steps = 50
    # Also sample with the exact phi_G in place of the network: the floor that DDIM
    # with this schedule and step count can reach (keys rmsd/oracle/steps_<k>).
    config.eval.oracle = True

    # Gradient-estimator variance (paper 000, Theorem 1).
    config.grad_var = ml_collections.ConfigDict()
    config.grad_var.times = (0.1, 0.3, 0.5, 0.7, 0.9)
    config.grad_var.num_examples = 1024
    # Networks at which both estimators are compared: the initial one (keys
    # grad_var/...) and the trained ones listed (keys grad_var@<method>/...).
    config.grad_var.params = ("init", "baseline")

    variant = arg or ""
    if variant == "quick":
        config.train.num_steps = 4000
        config.train.lr_decay_every = 1600
    elif variant == "snr":
        config.diffusion.loss_weight = "snr"
    elif variant == "smoke":
        config.model.hidden = 16
        config.model.num_layers = 2
        config.train.num_steps = 20
        config.train.batch_size = 16
        config.train.chunk = 10
        config.eval.num_samples = 32
        config.eval.sampling_steps = (10, 15)
        config.eval.num_plot_samples = 8
        config.eval.plot_steps = 10
        config.grad_var.times = (0.5,)
        config.grad_var.num_examples = 8
        config.grad_var.params = ("init",)
    elif variant:
        raise ValueError(
            f"Unknown variant {variant!r} of configs/toy_2d.py; use quick, snr or smoke."
        )
    return config
