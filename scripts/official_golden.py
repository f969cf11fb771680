"""Writes the golden fixtures of `tests/pretrained/` from the official SymDiff and EDM code.

Run with a Python that has torch (CPU), numpy, rdkit and timm, pointing at the source
trees of the two official repositories:

    python scripts/official_golden.py \
        --official_src /path/to/SymDiff --edm_src /path/to/e3_diffusion_for_molecules \
        --out tests/pretrained/fixtures

Every model is built through the official constructors at a tiny size, every parameter
re-drawn from a seeded normal (so no weight is zero, unlike the official zero-initialised
adaLN layers), and evaluated on fixed inputs. Each fixture is an `.npz` holding the
weights under `param/<official state_dict name>`, the inputs under `in/<name>`, the
outputs under `out/<name>`, scalar settings under `cfg/<name>` and the official commits
under `meta/symdiff_commit` and `meta/edm_commit`. Only these numbers enter the repository.

`load_official/` is an official run directory (`args.pickle` and
`generative_model_ema.npy`, written with `pickle` and `torch.save` as the official
training scripts do) for each of `dit_gaussian_dynamics`, `dit_dit_gaussian_dynamics`
and `egnn_dynamics`, with outputs of the official `_forward` on fixed inputs (a few
hundred draws for the stochastic one).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import os
import pickle
import subprocess
import sys
import types

import numpy as np

# Modules the official code imports but the pieces used here never call.
_STUBBED = ("torchvision", "wandb", "transformers", "matplotlib", "imageio")


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {})

    def __hash__(cls):
        return id(cls)

    def __call__(cls, *args, **kwargs):
        return cls


class _StubModule(types.ModuleType):
    __path__: list = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in _STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


def _commit(directory: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", directory, "rev-parse", "HEAD"], capture_output=True, text=True
        )
        if out.returncode == 0:
            return out.stdout.strip()
    except OSError:
        pass
    path = os.path.join(directory, "COMMIT")
    return open(path).read().strip() if os.path.exists(path) else "unknown"


def _import_official(src: str, names: list[str]) -> dict:
    """Imports modules of one official tree (the two trees share package names)."""
    for mod in list(sys.modules):
        if mod.split(".")[0] in ("egnn", "equivariant_diffusion", "qm9", "sym_nn", "configs"):
            del sys.modules[mod]
    sys.path.insert(0, src)
    try:
        return {n: importlib.import_module(n) for n in names}
    finally:
        sys.path.remove(src)


def _randomise(module, seed: int, std: float = 0.3) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.copy_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _state(module) -> dict:
    return {f"param/{k}": v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _batch(rng: np.random.Generator, b: int, n: int, sizes, features: int):
    mask = np.zeros((b, n), np.float32)
    for i, s in enumerate(sizes):
        mask[i, :s] = 1
    x = rng.normal(size=(b, n, 3)).astype(np.float32) * mask[..., None]
    x = x - (x.sum(1, keepdims=True) / mask.sum(1)[:, None, None]) * mask[..., None]
    h = rng.normal(size=(b, n, features)).astype(np.float32) * mask[..., None]
    return x, h, mask


# ----------------------------------------------------------------------------- SymDiff


def _dit_args(**kw):
    # Tiny sizes: eps-network (hidden 24 = 10 + 14, 2 blocks, 3 heads), gamma trunk
    # (hidden 16, 2 blocks, 2 heads), decoder 16 -> 8 -> 9, K = 12 Gaussians.
    base = dict(
        context_node_nf=0, xh_hidden_size=10, K=12, hidden_size=24, depth=2, num_heads=3,
        mlp_ratio=4.0, mlp_dropout=0.0, mlp_type="swiglu", enc_hidden_size=16, enc_depth=2,
        enc_num_heads=2, enc_mlp_ratio=4.0, dec_hidden_features=8, noise_dims=3,
        noise_std=1.0, fix_qr=True,
    )  # fmt: skip
    base.update(kw)
    return base


_DIT_KEYS = ("context_node_nf", "xh_hidden_size", "K", "hidden_size", "depth", "num_heads",
             "mlp_ratio", "mlp_dropout", "mlp_type")  # fmt: skip
_GAMMA_KEYS = ("enc_hidden_size", "enc_depth", "enc_num_heads", "enc_mlp_ratio",
               "dec_hidden_features", "noise_dims", "noise_std", "fix_qr")  # fmt: skip


def _build_dit(sym, a, in_node_nf):
    kw = {k: a[k] for k in _DIT_KEYS}
    return sym.DiTGaussian_dynamics(None, in_node_nf=in_node_nf, **kw)


def _build_dit_dit(sym, a, in_node_nf):
    kw = {k: a[k] for k in _DIT_KEYS + _GAMMA_KEYS}
    return sym.DiT_DitGaussian_dynamics(None, in_node_nf=in_node_nf, **kw)


def _cfg(a: dict) -> dict:
    return {f"cfg/{k}": np.asarray(v) for k, v in a.items()}


def symdiff_fixtures(src: str, meta: dict, out: str) -> None:
    import torch

    mods = _import_official(
        src, ["sym_nn.sym_nn", "sym_nn.utils", "equivariant_diffusion.en_diffusion"]
    )
    sym, utils, en = (
        mods["sym_nn.sym_nn"],
        mods["sym_nn.utils"],
        mods["equivariant_diffusion.en_diffusion"],
    )
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    F = 6
    b, n, sizes = 3, 7, (7, 5, 3)
    x, h, mask = _batch(rng, b, n, sizes, F)
    t = np.array([[0.0], [0.37], [1.0]], np.float32)
    tx, th, tm, tt = (torch.from_numpy(v) for v in (x, h, mask, t))
    nm = tm[..., None]

    # DiTGaussian_dynamics (dit / dit_aug), its distance embedding and one block.
    a = _dit_args()
    dyn = _build_dit(sym, a, F)
    _randomise(dyn, 1)
    dyn.eval()
    with torch.no_grad():
        N = nm.sum(1, keepdim=True)
        emb = torch.sum(dyn.pos_embedder(dyn.gaussian_embedder(tx, nm)), dim=-2) / N * nm
        z = torch.from_numpy(rng.normal(size=(b, n, a["hidden_size"])).astype(np.float32))
        c = torch.from_numpy(rng.normal(size=(b, a["hidden_size"])).astype(np.float32))
        block = dyn.model.blocks[0](z, c, tm)
        full = dyn._forward(tt, torch.cat([tx, th], -1), nm, None, None)
    np.savez_compressed(
        os.path.join(out, "dit_gaussian_dynamics.npz"),
        **meta,
        **_cfg(a),
        **_state(dyn),
        **{"in/x": x, "in/h": h, "in/mask": mask, "in/t": t, "in/z": _np(z), "in/c": _np(c)},
        **{"out/distance_embedding": _np(emb), "out/block0": _np(block), "out/eps": _np(full)},
    )

    # DiT_DitGaussian_dynamics (dit_dit): f_theta given R0 and eta, and the whole kernel.
    for fix_qr in (True, False):
        a = _dit_args(fix_qr=fix_qr)
        dd = _build_dit_dit(sym, a, F)
        _randomise(dd, 2)
        dd.eval()
        r0 = utils.qr(torch.from_numpy(rng.normal(size=(b, 3, 3)).astype(np.float32)))[0]
        eta = torch.from_numpy(rng.normal(size=(b, n, a["noise_dims"])).astype(np.float32))
        with torch.no_grad():
            xc = sym.remove_mean_with_mask(tx, nm)
            with _patched(torch, "randn", lambda *s, eta=eta, **k: eta.clone()):
                q = dd.gamma_backbone(tt, torch.bmm(xc, r0), nm)
            with _patched(sym, "orthogonal_haar", lambda dim, target_tensor, r0=r0: r0.clone()):
                with _patched(torch, "randn", lambda *s, eta=eta, **k: eta.clone()):
                    gamma = dd.gamma(tt, xc, nm)
                    eps = dd._forward(tt, torch.cat([tx, th], -1), nm, None, None)
        name = "dit_dit_gaussian_dynamics" + ("" if fix_qr else "_nofix")
        np.savez_compressed(
            os.path.join(out, name + ".npz"),
            **meta,
            **_cfg(a),
            **_state(dd),
            **{
                "in/x": x,
                "in/h": h,
                "in/mask": mask,
                "in/t": t,
                "in/r0": _np(r0),
                "in/eta": _np(eta),
            },
            **{"out/gamma_backbone": _np(q), "out/gamma": _np(gamma), "out/eps": _np(eps)},
        )

    # EnVariationalDiffusion around the tiny DiT: schedule, loss, VLB terms, one step.
    T = 1000
    vdm = en.EnVariationalDiffusion(
        dynamics=dyn,
        in_node_nf=F,
        n_dims=3,
        timesteps=T,
        noise_schedule="polynomial_2",
        noise_precision=1e-5,
        loss_type="l2",
        norm_values=[1.0, 4.0, 10.0],
        include_charges=True,
    )
    grid = torch.linspace(0, 1, T + 1)[:, None]
    one_hot = np.zeros((b, n, 5), np.float32)
    charges = np.zeros((b, n, 1), np.float32)
    types_ = rng.integers(0, 5, size=(b, n))
    z_of = np.array([1, 6, 7, 8, 9], np.float32)
    one_hot[np.arange(b)[:, None], np.arange(n)[None], types_] = 1
    one_hot *= mask[..., None]
    charges[..., 0] = z_of[types_] * mask
    hx, hd, _ = vdm.normalize(
        tx, {"categorical": torch.from_numpy(one_hot), "integer": torch.from_numpy(charges)}, nm
    )
    eps_fixed = [vdm.sample_combined_position_feature_noise(b, n, nm) for _ in range(2)]
    t_int = torch.tensor([[0.0], [1.0], [537.0]])
    t_int_vlb = torch.tensor([[1.0], [2.0], [537.0]])
    calls = {"noise": 0}

    def fixed_noise(n_samples, n_nodes, node_mask):
        e = eps_fixed[calls["noise"] % 2]
        calls["noise"] += 1
        return e.clone()

    out_loss = {}
    with torch.no_grad(), _patched(vdm, "sample_combined_position_feature_noise", fixed_noise):
        with _patched(torch, "randint", lambda *s, **k: t_int.clone()):
            vdm.train()
            calls["noise"] = 0
            out_loss["out/train_loss"] = _np(
                vdm.compute_loss(hx, hd, nm, None, None, t0_always=False)[0]
            )
        with _patched(torch, "randint", lambda *s, **k: t_int_vlb.clone()):
            vdm.eval()
            calls["noise"] = 0
            out_loss["out/vlb_loss"] = _np(
                vdm.compute_loss(hx, hd, nm, None, None, t0_always=True)[0]
            )
        xh = torch.cat([hx, hd["categorical"], hd["integer"]], 2)
        out_loss["out/kl_prior"] = _np(vdm.kl_prior(xh, nm))
        out_loss["out/log_constants"] = _np(vdm.log_constants_p_x_given_z0(hx, nm))
        zeros = torch.zeros(b, 1)
        g0 = vdm.inflate_batch_array(vdm.gamma(zeros), hx)
        z0 = vdm.alpha(g0, hx) * xh + vdm.sigma(g0, hx) * eps_fixed[1]
        net0 = vdm.phi(z0, zeros, nm, None, None)
        out_loss["out/log_pxh_given_z0"] = _np(
            vdm.log_pxh_given_z0_without_constants(hx, hd, z0, g0, eps_fixed[1], net0, nm)
        )
        out_loss["out/net0"] = _np(net0)
        s_t, t_t = (
            torch.tensor([[536.0], [0.0], [999.0]]) / T,
            torch.tensor([[537.0], [1.0], [1000.0]]) / T,
        )
        zt = vdm.alpha(vdm.gamma(t_t), xh) * xh + vdm.sigma(vdm.gamma(t_t), xh) * eps_fixed[0]
        calls["noise"] = 1
        out_loss["out/step_zs"] = _np(vdm.sample_p_zs_given_zt(s_t, t_t, zt, nm, None, None))
        out_loss["out/step_eps"] = _np(vdm.phi(zt, t_t, nm, None, None))
    np.savez_compressed(
        os.path.join(out, "diffusion.npz"),
        **meta,
        **_state(dyn),
        **_cfg(_dit_args()),
        **{
            "in/x": _np(hx),
            "in/one_hot": one_hot,
            "in/charges": charges[..., 0],
            "in/mask": mask,
            "in/eps": _np(eps_fixed[0]),
            "in/eps0": _np(eps_fixed[1]),
            "in/t_int": _np(t_int)[:, 0],
            "in/t_int_vlb": _np(t_int_vlb)[:, 0],
            "in/step_s": _np(s_t)[:, 0],
            "in/step_t": _np(t_t)[:, 0],
            "in/step_zt": _np(zt),
        },
        **{"out/schedule_gamma": _np(vdm.gamma(grid))[:, 0]},
        **out_loss,
    )


# ----------------------------------------------------------------------------- EDM


def _egnn_kw():
    return dict(
        hidden_nf=16,
        n_layers=2,
        attention=True,
        tanh=True,
        norm_constant=1,
        inv_sublayers=2,
        sin_embedding=False,
        normalization_factor=1,
        aggregation_method="sum",
    )


def _build_egnn(models, in_node_nf):
    import torch

    kw = _egnn_kw()
    return models.EGNN_dynamics_QM9(
        in_node_nf=in_node_nf + 1,
        context_node_nf=0,
        n_dims=3,
        device="cpu",
        hidden_nf=kw["hidden_nf"],
        act_fn=torch.nn.SiLU(),
        n_layers=kw["n_layers"],
        attention=kw["attention"],
        tanh=kw["tanh"],
        mode="egnn_dynamics",
        norm_constant=kw["norm_constant"],
        inv_sublayers=kw["inv_sublayers"],
        sin_embedding=kw["sin_embedding"],
        normalization_factor=kw["normalization_factor"],
        aggregation_method=kw["aggregation_method"],
    )


def _edge_mask(nm):
    import torch

    b, n, _ = nm.shape
    em = nm * nm.transpose(1, 2) * (1 - torch.eye(n))[None]
    return em.reshape(b * n * n, 1)


def egnn_fixture(src: str, meta: dict, out: str) -> None:
    import torch

    models = _import_official(src, ["egnn.models"])["egnn.models"]
    rng = np.random.default_rng(5)
    F = 6
    b, n = 3, 6
    x, h, mask = _batch(rng, b, n, (6, 4, 2), F)
    t = np.array([[0.1], [0.6], [0.95]], np.float32)
    dyn = _build_egnn(models, F)
    _randomise(dyn, 3, std=0.2)
    nm = torch.from_numpy(mask)[..., None]
    with torch.no_grad():
        eps = dyn._forward(
            torch.from_numpy(t),
            torch.from_numpy(np.concatenate([x, h], -1)),
            nm,
            _edge_mask(nm),
            None,
        )
    kw = _egnn_kw()
    np.savez_compressed(
        os.path.join(out, "egnn_dynamics.npz"),
        **meta,
        **{f"cfg/{k}": np.asarray(v) for k, v in kw.items()},
        **_state(dyn),
        **{"in/x": x, "in/h": h, "in/mask": mask, "in/t": t},
        **{"out/eps": _np(eps)},
    )


_QM9_SMILES = [
    "CCO",
    "c1ccccc1",
    "CC(=O)N",
    "C#N",
    "OC1CC1",
    "CC(C)F",
    "O=CC=O",
    "CN(C)C=O",
    "C1=CC=CN=C1",
    "OCC#C",
]
_GEOM_SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "Clc1ccc(S)cc1",
    "CS(=O)(=O)N",
    "Brc1ccncc1",
    "OP(=O)(O)OC",
    "FC(F)(F)c1ccc(I)cc1",
    "CC[Si](C)(C)O",
    "O=C(N)c1cccs1",
]


def metric_fixtures(src: str, meta: dict, out: str) -> None:
    import torch
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mods = _import_official(src, ["qm9.analyze", "qm9.rdkit_functions", "configs.datasets_config"])
    analyze, rdf, cfgs = (
        mods["qm9.analyze"],
        mods["qm9.rdkit_functions"],
        mods["configs.datasets_config"],
    )
    analyze.use_rdkit = False
    rng = np.random.default_rng(11)
    arrays = {}
    for dataset, smiles, info in (
        ("qm9", _QM9_SMILES, cfgs.get_dataset_info("qm9", False)),
        ("geom", _GEOM_SMILES, cfgs.get_dataset_info("geom", False)),
    ):
        decoder = info["atom_decoder"]
        mols = []
        for s in smiles:
            m = Chem.AddHs(Chem.MolFromSmiles(s))
            AllChem.EmbedMolecule(m, randomSeed=7)
            pos = m.GetConformer().GetPositions()
            types_ = [decoder.index(a.GetSymbol()) for a in m.GetAtoms()]
            for scale in (0.0, 0.05, 0.15, 0.3):
                mols.append((pos + scale * rng.normal(size=pos.shape), types_))
        n_max = max(len(t) for _, t in mols)
        B = len(mols)
        X = np.zeros((B, n_max, 3), np.float32)
        A = np.zeros((B, n_max), np.int64)
        M = np.zeros((B, n_max), np.float32)
        for i, (p, ty) in enumerate(mols):
            X[i, : len(ty)] = p
            A[i, : len(ty)] = ty
            M[i, : len(ty)] = 1
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(A), len(decoder)).float()
        res, _ = analyze.analyze_stability_for_molecules(
            {"one_hot": one_hot, "x": torch.from_numpy(X), "node_mask": torch.from_numpy(M)}, info
        )
        stable, bonds, valid = [], [], []
        metrics = rdf.BasicMolecularMetrics(info, dataset_smiles_list=[])
        for i, (_, ty) in enumerate(mols):
            k = len(ty)
            pos = torch.from_numpy(X[i, :k])
            at = torch.from_numpy(A[i, :k])
            s_, nb, _ = analyze.check_stability(pos, at, info)
            stable.append(int(s_))
            bonds.append(int(nb))
            valid.append(len(metrics.compute_validity([(pos, at)])[0]))
        z = np.array([Chem.Atom(decoder[a]).GetAtomicNum() for a in range(len(decoder))])
        arrays.update(
            {
                f"in/{dataset}_positions": X,
                f"in/{dataset}_types": A,
                f"in/{dataset}_atomic_numbers": z[A] * (M > 0),
                f"in/{dataset}_mask": M,
                f"out/{dataset}_molecule_stable": np.array(stable),
                f"out/{dataset}_stable_atoms": np.array(bonds),
                f"out/{dataset}_valid": np.array(valid),
                f"out/{dataset}_mol_stable_fraction": np.array(res["mol_stable"]),
                f"out/{dataset}_atm_stable_fraction": np.array(res["atm_stable"]),
            }
        )
    np.savez_compressed(os.path.join(out, "metrics.npz"), **meta, **arrays)


# ----------------------------------------------------------------------------- run dirs


def _namespace(**kw):
    return argparse.Namespace(**kw)


def run_directories(sym_src: str, edm_src: str, meta: dict, out: str, draws: int) -> None:
    """Official run directories (args.pickle, generative_model_ema.npy) and their outputs."""
    import torch

    common = dict(
        dataset="qm9",
        remove_h=False,
        include_charges=True,
        conditioning=[],
        condition_time=True,
        probabilistic_model="diffusion",
        diffusion_steps=1000,
        diffusion_noise_schedule="polynomial_2",
        diffusion_noise_precision=1e-5,
        diffusion_loss_type="l2",
        normalize_factors=[1, 4, 10],
        ema_decay=0.999,
    )
    rng = np.random.default_rng(21)
    F = 6
    b, n = 2, 5
    x, h, mask = _batch(rng, b, n, (5, 3), F)
    t = np.array([[0.3], [0.8]], np.float32)
    inputs = {"in/x": x, "in/h": h, "in/mask": mask, "in/t": t}
    tx, th, tm, tt = (torch.from_numpy(v) for v in (x, h, mask, t))
    nm = tm[..., None]
    xh = torch.cat([tx, th], -1)

    for model, src in (
        ("dit_gaussian_dynamics", sym_src),
        ("dit_dit_gaussian_dynamics", sym_src),
        ("egnn_dynamics", edm_src),
    ):
        if model == "egnn_dynamics":
            mods = _import_official(src, ["egnn.models"])
            kw = _egnn_kw()
            args = _namespace(
                model=model,
                nf=kw["hidden_nf"],
                n_layers=kw["n_layers"],
                attention=kw["attention"],
                tanh=kw["tanh"],
                norm_constant=kw["norm_constant"],
                inv_sublayers=kw["inv_sublayers"],
                sin_embedding=kw["sin_embedding"],
                normalization_factor=kw["normalization_factor"],
                aggregation_method=kw["aggregation_method"],
                **common,
            )
            dyn = _build_egnn(mods["egnn.models"], F)
            em = _edge_mask(nm)
        else:
            sym = _import_official(src, ["sym_nn.sym_nn"])["sym_nn.sym_nn"]
            a = _dit_args()
            args = _namespace(model=model, **a, **common)
            dyn = (_build_dit if model == "dit_gaussian_dynamics" else _build_dit_dit)(sym, a, F)
            em = None
        _randomise(dyn, 7, std=0.2)
        dyn.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            k = draws if model == "dit_dit_gaussian_dynamics" else 1
            outs = np.stack([_np(dyn._forward(tt, xh, nm, em, None)) for _ in range(k)])
        d = os.path.join(out, "load_official", model)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "args.pickle"), "wb") as f:
            pickle.dump(args, f)
        # The official scripts save `model_ema.state_dict()` of the EnVariationalDiffusion,
        # whose dynamics sits under `dynamics.`; the schedule's gamma buffer is included.
        state = {f"dynamics.{k}": v for k, v in dyn.state_dict().items()}
        torch.save(state, os.path.join(d, "generative_model_ema.npy"))
        np.savez_compressed(os.path.join(d, "outputs.npz"), **meta, **inputs, **{"out/eps": outs})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official_src", required=True, help="source tree of leozhangML/SymDiff")
    p.add_argument(
        "--edm_src", required=True, help="source tree of ehoogeboom/e3_diffusion_for_molecules"
    )
    p.add_argument("--out", default="tests/pretrained/fixtures")
    p.add_argument("--symdiff_commit", default=None)
    p.add_argument("--edm_commit", default=None)
    p.add_argument("--draws", type=int, default=300)
    args = p.parse_args()
    sys.meta_path.insert(0, _StubFinder())
    import torch

    torch.set_default_dtype(torch.float32)
    os.makedirs(args.out, exist_ok=True)
    meta = {
        "meta/symdiff_commit": np.asarray(args.symdiff_commit or _commit(args.official_src)),
        "meta/edm_commit": np.asarray(args.edm_commit or _commit(args.edm_src)),
        "meta/torch": np.asarray(torch.__version__),
    }
    symdiff_fixtures(args.official_src, meta, args.out)
    egnn_fixture(args.edm_src, meta, args.out)
    metric_fixtures(args.edm_src, meta, args.out)
    run_directories(args.official_src, args.edm_src, meta, args.out, args.draws)


if __name__ == "__main__":
    main()
