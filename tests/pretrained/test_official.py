"""`load_official` on run directories written through the official constructors.

`tests/pretrained/fixtures/load_official/<model>/` holds `args.pickle`, a
`generative_model_ema.npy` of a tiny random-weight official model and the official
`_forward` outputs on fixed inputs (300 draws for the stochastic learned-gamma model),
from `scripts/official_golden.py`.
"""

import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flax import nnx  # noqa: E402

from symdiff_jax.pretrained import (  # noqa: E402
    COMPOSITIONS,
    LearnedGammaDenoiser,
    load_official,
    read_args,
)
from symdiff_jax.testing import (  # noqa: E402
    act_on_rotation,
    assert_stochastically_equivariant,
)
from symdiff_jax.testing.two_sample import energy_test  # noqa: E402

RUNS = os.path.join(os.path.dirname(__file__), "fixtures", "load_official")
ALPHA = 1e-3  # false-alarm rate of each distributional test


def _run(model):
    directory = os.path.join(RUNS, model)
    with np.load(os.path.join(directory, "outputs.npz")) as d:
        data = {k: d[k] for k in d.files}
    return directory, data


def _call(denoiser, key, d):
    eps_x, eps_h = denoiser(key, d["in/x"], d["in/h"], d["in/t"][:, 0], d["in/mask"])
    return jnp.concatenate([eps_x, eps_h], -1)


@pytest.mark.parametrize("model", ["dit_gaussian_dynamics", "egnn_dynamics"])
def test_deterministic_models_match(model, close):
    directory, d = _run(model)
    denoiser, config = load_official(directory)
    assert config.model == model and config.num_features == 6 and config.num_steps == 1000
    assert config.conditioning == [] and config.normalize_factors == [1.0, 4.0, 10.0]
    close(_call(denoiser, jax.random.key(0), d), d["out/eps"][0])


def _draws(denoiser, d, n, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: _call(denoiser, k, d)))(keys))


def test_learned_gamma_matches_in_distribution():
    """Energy two-sample test, ours vs the official `_forward`, 300 draws each, level 1e-3."""
    directory, d = _run("dit_dit_gaussian_dynamics")
    denoiser, config = load_official(directory)
    assert config.gamma_composition == "official" and config.eta == "masked"
    theirs = d["out/eps"]
    ours = _draws(denoiser, d, len(theirs))
    result = energy_test(ours, theirs, num_permutations=1999, seed=0)
    assert result.pvalue > ALPHA, result


class FrameNet(nnx.Module):
    """A stand-in `f` that returns a noisy frame of the input, `A = [y_1 y_2 y_3] + E / 2`
    (the first three atoms as columns, `E` the first three rows of `eta`), so `qr(A)`
    rotates with the molecule: the kind of `f` a trained gamma approaches (a noisy
    canonicaliser). Random tiny weights give an `f` whose composed `R` is nearly Haar
    in both compositions, where no test can tell them apart."""

    noise_dims = 3

    def __call__(self, y, eta, t, mask):
        return jnp.swapaxes(y[:, :3] + 0.5 * eta[:, :3], -1, -2)


def _gamma_kernel(denoiser, t):
    """The rotation kernel `x -> R ~ gamma(. | x)` of one molecule."""

    def kernel(key, state, mask=None):
        x, h = state
        return denoiser.rotation(key, x[None], h[None], jnp.full((1,), t), mask[None])[0]

    return kernel


def test_official_composition_is_not_equivariant_paper_is():
    """`R(g x) ~ g R(x)` holds for the paper's `R0 qr(f(R0^T x))`; the official
    `qr(f(R0^T x)) R0^T` gives `R(g x) ~ R(x) g^T` instead (substitute `R0 -> g R0`)."""
    directory, d = _run("dit_dit_gaussian_dynamics")
    x, h, m = d["in/x"][0], d["in/h"][0], d["in/mask"][0]
    key = jax.random.key(3)
    # FrameNet is not S_N-invariant (it picks atoms 1-3): test O(3) alone.
    kw = dict(mask=m, num_samples=300, alpha=ALPHA, out_act=act_on_rotation, permutations=False)
    loaded, _ = load_official(directory)
    for composition in COMPOSITIONS:
        den = LearnedGammaDenoiser(
            loaded.eps_net, FrameNet(), composition=composition, fix_qr=False
        )
        if composition == "paper":
            assert_stochastically_equivariant(_gamma_kernel(den, 0.3), key, (x, h), **kw)
        else:
            with pytest.raises(AssertionError):
                assert_stochastically_equivariant(_gamma_kernel(den, 0.3), key, (x, h), **kw)


def test_args_unpickler_refuses_other_classes(tmp_path):
    path = tmp_path / "args.pickle"
    path.write_bytes(pickle.dumps({"model": os.getcwd}))
    with pytest.raises(pickle.UnpicklingError):
        read_args(str(path))
