"""Flow matching on molecules `[x, h]`: the loss, its targets and the symmetrised Euler sampler.

Oracle checks: for data made of one molecule the conditional velocity is a function of
`(z_t, t)` alone, `(x1 - z_t) / (1 - t)`, so a denoiser that returns it has zero loss, and
the Euler sampler driven by it lands exactly on the molecule (its last step has
`dt = 1 - t`). The sampler's output law is O(3) x S_N-invariant with a symmetrised
denoiser and not with the plain per-atom network (energy test, false-alarm rate 1e-3).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.diffusion.molecules import QM9_FEATURES, Molecules
from symdiff_jax.flow_matching import molecule_flow_losses, sample_molecules_flow
from symdiff_jax.groups import remove_com
from symdiff_jax.models.denoisers import SymDiffDenoiser
from symdiff_jax.testing import assert_stochastically_equivariant

SPEC = QM9_FEATURES
TYPES = np.array([1, 0, 0, 2, 0])  # C, H, H, N, H (the spec's classes: H, C, N, O, F)


def one_molecule(batch: int, n_pad: int = 1) -> Molecules:
    """`batch` copies of one 5-atom molecule padded by `n_pad` rows."""
    n = len(TYPES)
    x = remove_com(jax.random.normal(jax.random.key(7), (n, 3)))
    one_hot = jax.nn.one_hot(TYPES, SPEC.num_classes)
    charges = jnp.array([6, 1, 1, 7, 1], jnp.float32)
    h = jnp.concatenate([one_hot / SPEC.onehot_scale, charges[:, None] / SPEC.charge_scale], -1)

    def pad(a):
        a = jnp.concatenate([a, jnp.zeros((n_pad,) + a.shape[1:], a.dtype)])
        return jnp.broadcast_to(a, (batch,) + a.shape)

    mask = pad(jnp.ones((n,)))
    return Molecules(pad(x), pad(h), pad(one_hot), pad(charges), mask)


def oracle(mol: Molecules, flip_time: bool = False):
    """The exact velocity towards `mol` from `(z, t)`; `flip_time` misreads the time input."""
    target = jnp.concatenate([mol.x, mol.h], -1)
    d = SPEC.n_dims

    def denoise(key, x, h, tau, mask):
        del key
        t = tau if flip_time else 1.0 - tau
        z = jnp.concatenate([x, h], -1)
        v = (target[: z.shape[0]] - z) / (1.0 - t)[:, None, None] * mask[..., None]
        return v[..., :d], v[..., d:]

    return denoise


def test_exact_velocity_has_zero_loss():
    mol = one_molecule(64)
    losses = molecule_flow_losses(oracle(mol), jax.random.key(0), mol)
    assert losses["loss"].shape == (64,)
    np.testing.assert_allclose(losses["error"], 0.0, atol=1e-6)


def test_wrong_time_convention_is_penalised():
    """The same velocity fed flow time instead of the noise level misses the target."""
    mol = one_molecule(64)
    losses = molecule_flow_losses(oracle(mol, flip_time=True), jax.random.key(0), mol)
    assert float(jnp.mean(losses["error"])) > 1.0


def test_symmetrised_target_concentrates_on_x1_near_the_data():
    """`|phi_G(z_t) - x1|` -> 0 as s(t) -> 0, and is of the molecule's size at small t.

    Against the exact data velocity `(x1 - z_t) / s`, the symmetrised target
    `(phi_G - z_t) / s` differs by `(phi_G - x1) / s`, so `s^2 error = |phi_G - x1|^2`.
    """
    mol = one_molecule(32)

    def distance2(t, x_target="symmetrised"):
        error = molecule_flow_losses(
            oracle(mol), jax.random.key(1), mol, x_target=x_target, t=jnp.full((32,), t)
        )["error"]
        return error * (1.0 - t) ** 2

    near, far = distance2(0.999), distance2(0.2)
    assert float(jnp.median(far)) > 1.0
    assert float(jnp.max(near)) < 1e-4 * float(jnp.median(far))
    np.testing.assert_allclose(distance2(0.2, "data"), 0.0, atol=1e-6)


def test_padding_does_not_enter_the_loss():
    mol, padded = one_molecule(8, n_pad=1), one_molecule(8, n_pad=4)
    zero = lambda key, x, h, tau, mask: (jnp.zeros_like(x), jnp.zeros_like(h))  # noqa: E731
    t = jnp.full((8,), 0.5)
    a = molecule_flow_losses(zero, jax.random.key(2), mol, t=t)["error"]
    b = molecule_flow_losses(zero, jax.random.key(2), padded, t=t)["error"]
    assert float(jnp.min(a)) > 0
    # Zero velocity: the error is |u|^2 = |x1 - z0|^2 summed over the real atoms only.
    np.testing.assert_allclose(jnp.mean(a), jnp.mean(b), rtol=0.3)


@pytest.mark.parametrize("num_steps", [1, 3, 20])
def test_sampler_driven_by_the_exact_velocity_reaches_the_molecule(num_steps):
    mol = one_molecule(4)
    out = sample_molecules_flow(oracle(mol), jax.random.key(3), mol.mask, num_steps=num_steps)
    np.testing.assert_allclose(out["positions"], mol.x, atol=1e-4)
    np.testing.assert_array_equal(out["one_hot"], mol.one_hot.astype(jnp.int32))
    np.testing.assert_array_equal(out["charges"], mol.charges.astype(jnp.int32))
    np.testing.assert_array_equal(out["mask"], mol.mask)


class PerAtomNet(nnx.Module):
    """S_N-equivariant, not O(3)-equivariant: `x_i -> tanh(x_i W + t) A`, `h -> h / 2`."""

    def __init__(self):
        self.w = jnp.array([[2.0, -1.0, 0.5], [0.3, 1.5, 0.0], [0.0, 0.7, -1.2]])
        self.a = jnp.array([[3.0, 1.0, 0.0], [0.0, -2.0, 1.0], [1.0, 0.0, 2.0]])

    def __call__(self, x, h, t, mask):
        v = jnp.tanh(x @ self.w + t[:, None, None]) @ self.a
        return remove_com(v * mask[..., None], mask), 0.5 * h


def flow_sampler(denoise):
    mask = jnp.ones((1, 4))

    def kernel(key, x):
        del x  # the sampler draws its own prior: this tests the law of the output
        return sample_molecules_flow(denoise, key, mask, num_steps=4)["positions"][0]

    return kernel


def test_symmetrised_sampler_law_is_invariant():
    net = PerAtomNet()
    denoise = SymDiffDenoiser(net, None, group="O3")
    x = jnp.zeros((4, 3))
    assert_stochastically_equivariant(flow_sampler(denoise), jax.random.key(4), x, alpha=1e-3)


def test_plain_sampler_law_is_not_invariant():
    net = PerAtomNet()
    plain = lambda key, x, h, t, mask: net(x, h, t, mask)  # noqa: E731
    with pytest.raises(AssertionError):
        assert_stochastically_equivariant(
            flow_sampler(plain), jax.random.key(4), jnp.zeros((4, 3)), alpha=1e-3
        )


def test_bad_arguments():
    mol = one_molecule(2)
    with pytest.raises(ValueError, match="x_target"):
        molecule_flow_losses(oracle(mol), jax.random.key(0), mol, x_target="x0")
    with pytest.raises(ValueError, match="num_steps"):
        sample_molecules_flow(oracle(mol), jax.random.key(0), mol.mask, num_steps=0)
