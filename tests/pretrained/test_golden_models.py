"""Our converted DiT, learned gamma and EGNN against the official SymDiff and EDM modules.

The fixtures hold tiny official models with random weights (every parameter seeded normal,
no zero-initialised layer), fixed inputs with padded atoms, and the official outputs
(`scripts/official_golden.py`; commits in each fixture). float32, 1e-5 relative.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from symdiff_jax.groups import remove_com
from symdiff_jax.models.denoisers import EGNNDenoiser
from symdiff_jax.pretrained import convert
from symdiff_jax.pretrained.denoisers import LearnedGammaDenoiser, orthogonal_from_raw


def _dit(g, net="model"):
    dit = convert.build_dit(g.cfg, g.inp["h"].shape[-1], nnx.Rngs(0))
    convert.load_dit(dit, g.state, net=net)
    return dit


def test_distance_embedding(golden, close):
    g = golden("dit_gaussian_dynamics")
    dit = _dit(g)
    close(dit.distance_embedding(g.inp["x"], g.inp["mask"]), g.out["distance_embedding"])


def test_dit_block(golden, close):
    g = golden("dit_gaussian_dynamics")
    block = _dit(g).backbone.blocks[0]
    close(block(g.inp["z"], g.inp["c"], g.inp["mask"]), g.out["block0"])


def test_dit_eps_network(golden, close):
    g = golden("dit_gaussian_dynamics")
    i = g.inp
    eps_x, eps_h = _dit(g)(i["x"], i["h"], i["t"][:, 0], i["mask"])
    close(jnp.concatenate([eps_x, eps_h], -1), g.out["eps"])


@pytest.mark.parametrize("name", ["dit_dit_gaussian_dynamics", "dit_dit_gaussian_dynamics_nofix"])
def test_gamma_backbone_and_kernel(golden, close, name):
    g = golden(name)
    i = g.inp
    dit = _dit(g, net="k")
    gamma_net = convert.build_gamma_net(g.cfg, dit, nnx.Rngs(1))
    convert.load_gamma_net(gamma_net, g.state)
    t, m = i["t"][:, 0], i["mask"]
    x = remove_com(i["x"], m)
    raw = gamma_net(jnp.matmul(x, i["r0"]), i["eta"], t, m)
    close(orthogonal_from_raw(raw, g.cfg["fix_qr"]), g.out["gamma_backbone"])
    den = LearnedGammaDenoiser(dit, gamma_net, composition="official", fix_qr=g.cfg["fix_qr"])
    r = den.rotation_given(i["r0"], i["eta"], i["x"], t, m)
    close(r, g.out["gamma"])
    eps_x, eps_h = den.apply_rotation(r, i["x"], i["h"], t, m)
    close(jnp.concatenate([eps_x, eps_h], -1), g.out["eps"])


def test_egnn_dynamics(golden, close):
    g = golden("egnn_dynamics")
    i = g.inp
    cfg = dict(g.cfg, nf=g.cfg["hidden_nf"])
    egnn = convert.build_egnn(cfg, i["h"].shape[-1], nnx.Rngs(0))
    convert.load_egnn(egnn, g.state)
    eps_x, eps_h = EGNNDenoiser(egnn)(None, i["x"], i["h"], i["t"][:, 0], i["mask"])
    close(np.concatenate([eps_x, eps_h], -1), g.out["eps"])
