r"""Learning parity: the same small SymDiff recipe trained by the official code and by ours.

Four steps, each a sub-command:

    # 1. EDM-format QM9 npz files (<out>/qm9/{train,valid,test}.npz) from our split
    python scripts/learning_parity.py data --out parity/data
    # 2. the official trainer (main_qm9.py of github leozhangML/SymDiff), as a program
    python scripts/learning_parity.py official --official_src /path/to/SymDiff \
        --python /path/to/torch-venv/bin/python --data parity/data --run parity/official_0
    # 3. ours on the same files
    python scripts/learning_parity.py ours --data parity/data --run parity/ours_0 --seed 0
    # 4. plot and table from both runs' logs
    python scripts/learning_parity.py report --official parity/official_0 parity/official_1 \
        --ours parity/ours_0 parity/ours_1 --png docs/figures/learning_parity.png \
        --md parity/learning_parity.md

The recipe (both sides): the `:small` SymDiff sizes of `configs/qm9_common.py`, batch 64,
AdamW (AMSGrad, weight decay 1e-12) at lr 2e-4 without warmup, gradient norm clipped at 2.0
(the official QM9 command's `--clipping_type norm --max_grad_norm 2.0`), EMA 0.999 without
warmup (the official trainer's default decay; its QM9 command's 0.9999 barely moves an EMA in
a few thousand steps), polynomial_2 schedule with T = 1000, normalize_factors [1, 4, 10].
The training set is a fixed random subset of the training split whose size is a whole number
of batches, so that one official epoch is `steps_per_epoch` steps and its per-epoch
validation falls on known steps; validation NLL is measured with the EMA weights on the same
fixed subset of the validation split on both sides.

The official code runs from its own directory (`--official_src`); nothing of it is imported
here. Each run directory holds the exact command line (`command.txt`) and its log.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BATCH = 64
# Sizes of `configs/qm9_common.py` `_small` (SymDiff): eps-network 96 = 48 + 48, 4 blocks,
# 4 heads; gamma trunk 48 x 2 x 4 heads, decoder 32, 3 noise dimensions.
SMALL = dict(
    hidden=96, depth=4, heads=4, node_embed=48, num_gaussians=48, mlp_ratio=4.0,
    gamma_hidden=48, gamma_depth=2, gamma_heads=4, gamma_mlp_ratio=4.0, decoder_hidden=32,
    noise_dims=3,
)  # fmt: skip
LR = 2e-4
CLIP = 2.0
EMA = 0.999


# ----------------------------------------------------------------------------- data


def _subset(n: int, count: int, seed: int) -> np.ndarray:
    if count <= 0 or count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:count])


def write_data(out: str, train: int, valid: int, test: int, seed: int) -> dict[str, int]:
    """Writes `<out>/qm9/{train,valid,test}.npz` (EDM's keys) from fixed subsets of our split."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from symdiff_jax.data import load_qm9

    directory = os.path.join(out, "qm9")
    os.makedirs(directory, exist_ok=True)
    sizes = {}
    for split, count in (("train", train), ("valid", valid), ("test", test)):
        data = load_qm9(split)
        idx = _subset(len(data["num_atoms"]), count, seed)
        np.savez(
            os.path.join(directory, f"{split}.npz"),
            num_atoms=data["num_atoms"][idx].astype(np.int64),
            charges=data["charges"][idx].astype(np.int64),
            positions=data["positions"][idx].astype(np.float32),
            index=data["index"][idx].astype(np.int64),
        )
        sizes[split] = int(len(idx))
    return sizes


def _train_size(data: str) -> int:
    with np.load(os.path.join(data, "qm9", "train.npz")) as f:
        return int(len(f["num_atoms"]))


# ----------------------------------------------------------------------------- runs


def official_command(python: str, src: str, data: str, exp_name: str, epochs: int) -> list[str]:
    """The official `main_qm9.py` command line of the recipe (run from the run directory).

    `main_qm9.py` runs unchanged through this script's `official_main` (which only makes
    `torchvision`, imported by `timm` but never used by the pieces trained here, an empty
    module: the registry has no CPU build of it for this torch).
    """
    s = SMALL
    return [
        "env", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1",
        python, os.path.abspath(__file__), "official_main", "--official_src",
        os.path.abspath(src), "--",
        "--exp_name", exp_name, "--model", "dit_dit_gaussian_dynamics", "--dataset", "qm9",
        "--datadir", os.path.abspath(data), "--no-cuda", "--no_wandb",
        "--diffusion_noise_precision", "1e-5", "--diffusion_steps", "1000",
        "--diffusion_loss_type", "l2", "--diffusion_noise_schedule", "polynomial_2",
        "--n_epochs", str(epochs), "--batch_size", str(BATCH), "--lr", str(LR),
        "--clipping_type", "norm", "--max_grad_norm", str(CLIP), "--ema_decay", str(EMA),
        "--weight_decay", "1e-12", "--use_amsgrad", "--normalize_factors", "[1,4,10]",
        "--n_stability_samples", "10", "--test_epochs", "1", "--save_model", "False",
        "--n_report_steps", "1",
        "--xh_hidden_size", str(s["node_embed"]), "--K", str(s["num_gaussians"]),
        "--enc_hidden_size", str(s["gamma_hidden"]), "--enc_depth", str(s["gamma_depth"]),
        "--enc_num_heads", str(s["gamma_heads"]), "--enc_mlp_ratio", str(s["gamma_mlp_ratio"]),
        "--dec_hidden_features", str(s["decoder_hidden"]),
        "--hidden_size", str(s["hidden"]), "--depth", str(s["depth"]),
        "--num_heads", str(s["heads"]), "--mlp_ratio", str(s["mlp_ratio"]),
        "--mlp_dropout", "0.0", "--noise_dims", str(s["noise_dims"]), "--noise_std", "1.0",
        "--mlp_type", "swiglu", "--fix_qr",
    ]  # fmt: skip


def ours_command(data: str, workdir: str, seed: int, steps: int, eval_every: int) -> list[str]:
    """Our `experiments.train` command line of the recipe."""
    return [
        sys.executable, "-m", "experiments.train",
        "--config", "configs/qm9_symdiff.py:small", "--workdir", os.path.abspath(workdir),
        f"--config.seed={seed}", f"--config.num_train_steps={steps}",
        f"--config.batch_size={BATCH}", f"--config.optim.learning_rate={LR}",
        "--config.optim.warmup_steps=0", f"--config.optim.clip_norm={CLIP}",
        f"--config.optim.ema_decay={EMA}", "--config.optim.ema_warmup=False",
        f"--config.data.source={os.path.abspath(os.path.join(data, 'qm9'))}",
        "--config.data.max_train=0", "--config.data.max_valid=0",
        f"--config.train.eval_every={eval_every}", "--config.train.log_every=50",
        f"--config.train.checkpoint_every={steps}", "--config.train.progress_bar=False",
        "--config.train.num_progress_samples=10", "--config.evaluate.num_samples=10",
        "--config.sample.batch_size=10", "--config.sample.num_steps=50",
    ]  # fmt: skip


def _launch(cmd: list[str], run: str, cwd: str, env: dict | None = None) -> float:
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "command.txt"), "w") as f:
        f.write(f"cd {shlex.quote(cwd)} && {shlex.join(cmd)}\n")
    print(shlex.join(cmd), flush=True)
    t0 = time.time()
    with open(os.path.join(run, "log.txt"), "w") as log:
        rc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.time() - t0
    with open(os.path.join(run, "wall.json"), "w") as f:
        json.dump({"wall_s": wall, "returncode": rc}, f)
    if rc != 0:
        raise SystemExit(f"the run failed with exit code {rc}; see {os.path.join(run, 'log.txt')}")
    return wall


class _Placeholder(type):
    """A class whose every attribute is another placeholder class (for import-time use)."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})

    def __hash__(cls) -> int:
        return id(cls)

    def __call__(cls, *args, **kwargs):
        return cls


class _EmptyModule(types.ModuleType):
    """A module whose every attribute is a placeholder class."""

    __path__: list = []

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})


class _EmptyPackageFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package: str):
        self.package = package

    def find_spec(self, fullname, path, target=None):
        if fullname == self.package or fullname.startswith(self.package + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _EmptyModule(spec.name)

    def exec_module(self, module):
        pass


def _skip(*args, **kwargs) -> dict:
    return {}


def official_main(src: str, argv: list[str]) -> None:
    """Runs `<src>/main_qm9.py argv...` as `__main__` (inside the official code's Python).

    The trainer's periodic sampling side tasks (a chain and five molecules written as xyz
    files and pictures at the start of each test epoch, and the stability analysis of
    `--n_stability_samples` samples after it) read the EMA weights and write files only;
    they are skipped to save CPU time. Training, EMA and the validation NLL run unchanged.
    """
    sys.meta_path.insert(0, _EmptyPackageFinder("torchvision"))
    main = os.path.join(src, "main_qm9.py")
    sys.path.insert(0, src)
    import train_test  # the official trainer's module (from `src`)

    for name in ("save_and_sample_chain", "sample_different_sizes_and_save", "analyze_and_save"):
        setattr(train_test, name, _skip)
    train_test.vis.visualize = train_test.vis.visualize_chain = _skip
    sys.argv = [main, *argv]
    runpy.run_path(main, run_name="__main__")


# ----------------------------------------------------------------------------- logs

_OFF_STEP = re.compile(r"Epoch: (\d+), iter: (\d+)/(\d+), Loss (\S+), NLL")
_OFF_VAL = re.compile(r"Val loss: (\S+)")
_OFF_EPOCH = re.compile(r"Epoch took (\S+) seconds")


def read_official(run: str) -> dict:
    """Per-step train losses, validation NLL by step and training seconds of an official log."""
    losses, val, epoch_s = [], [], []
    with open(os.path.join(run, "log.txt"), errors="replace") as f:
        # tqdm and the per-step report share lines ("\r"): split on both.
        for line in re.split(r"[\r\n]", f.read()):
            m = _OFF_STEP.search(line)
            if m:
                losses.append(float(m.group(4)))
                continue
            m = _OFF_VAL.search(line)
            if m:
                val.append((len(losses), float(m.group(1))))
                continue
            m = _OFF_EPOCH.search(line)
            if m:
                epoch_s.append(float(m.group(1)))
    wall = json.load(open(os.path.join(run, "wall.json")))["wall_s"]
    return {"loss": np.array(losses), "val": val, "train_s": sum(epoch_s), "wall_s": wall}


def read_ours(run: str) -> dict:
    """Windowed train losses, validation NLL by step and times of one of our workdirs."""
    loss, val = [], []
    workdir = os.path.join(run, "workdir")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            step, s = int(rec["step"]), rec.get("scalars", rec)
            if "train/loss" in s:
                loss.append((step, float(s["train/loss"])))
            if "val/nll" in s and (step, float(s["val/nll"])) not in val:
                val.append((step, float(s["val/nll"])))
    summary = json.load(open(os.path.join(workdir, "metrics.json")))
    wall = json.load(open(os.path.join(run, "wall.json")))["wall_s"]
    return {"loss": loss, "val": val, "train_s": summary.get("train_time_s"), "wall_s": wall}


# ----------------------------------------------------------------------------- report


def loss_conversion(data: str, seed: int = 0, draws: int = 4000) -> dict[str, float]:
    """Constants that put the official train loss on our scale (both from the data).

    The official trainer reports `mean_b[l2_b + kl_b - log p(N_b)]` with the l2 term divided
    by `(3 + 6) * w` (`w` the widest molecule of the batch, its collate function trims
    padding); ours reports `mean_b[l2_b + kl_b]` divided by `(3 + 6) * 29`. So
    `ours ~= (official - c) * rho` with `c = E[-log p(N)]` over the training files (`p` the
    full training split's size histogram, what the official `nodes_dist` holds) and
    `rho = E[w] / 29` over random batches of 64 (the t = 0 and prior terms, about 1 in 1000
    examples, are scaled along with it: a negligible error).

    Also `dlogp`, the mean over the validation files of `log p_full(N) - log p_train(N)`:
    our validation NLL uses the histogram of the training files, the official one that of
    the full training split; theirs is ours plus `dlogp` on average.
    """
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from symdiff_jax.data import load_qm9

    full = np.bincount(load_qm9("train")["num_atoms"], minlength=30).astype(np.float64)
    p_full = full / full.sum()
    with np.load(os.path.join(data, "qm9", "train.npz")) as f:
        n_train = np.asarray(f["num_atoms"])
    with np.load(os.path.join(data, "qm9", "valid.npz")) as f:
        n_valid = np.asarray(f["num_atoms"])
    sub = np.bincount(n_train, minlength=30).astype(np.float64)
    p_sub = sub / sub.sum()
    rng = np.random.default_rng(seed)
    widths = [n_train[rng.choice(len(n_train), BATCH, replace=False)].max() for _ in range(draws)]
    valid_sub = n_valid[p_sub[n_valid] > 0]
    return {
        "c": float(-np.log(p_full[n_train]).mean()),
        "rho": float(np.mean(widths) / 29.0),
        "dlogp": float((np.log(p_full[valid_sub]) - np.log(p_sub[valid_sub])).mean()),
    }


def _block_means(steps: np.ndarray, values: np.ndarray, edges: list[int]) -> list[float]:
    out, lo = [], 0
    for hi in edges:
        sel = (steps > lo) & (steps <= hi)
        out.append(float(np.mean(values[sel])) if sel.any() else float("nan"))
        lo = hi
    return out


def _fmt(values: list[float], digits: int = 3) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)])
    if v.size == 0:
        return "-"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ({v.min():.{digits}f}-{v.max():.{digits}f})"


def report(official: list[str], ours: list[str], data: str, png: str, md: str) -> None:
    """Writes the side-by-side plot (`png`) and the markdown table (`md`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conv = loss_conversion(data)
    off = [read_official(r) for r in official]
    our = [read_ours(r) for r in ours]
    window = 100  # a multiple of our log_every (50)
    fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=90)
    rows = {}
    for i, r in enumerate(off):
        steps = np.arange(1, len(r["loss"]) + 1)
        scaled = (r["loss"] - conv["c"]) * conv["rho"]
        ends = list(range(window, len(scaled) + 1, window))
        ax_l.plot(ends, _block_means(steps, scaled, ends), color="tab:orange", alpha=0.8,
                  label="official" if i == 0 else None)  # fmt: skip
        if r["val"]:
            vs, vv = zip(*r["val"], strict=True)
            ax_v.plot(vs, vv, "o-", color="tab:orange", label="official" if i == 0 else None)
        rows.setdefault("official", []).append((steps, r["loss"], scaled, dict(r["val"])))
    for i, r in enumerate(our):
        ls, lv = (np.array(v) for v in zip(*r["loss"], strict=True))
        ends = list(range(window, int(ls[-1]) + 1, window))
        ax_l.plot(
            ends,
            _block_means(ls, lv, ends),
            color="tab:blue",
            alpha=0.8,
            label="symdiff_jax" if i == 0 else None,
        )
        vs, vv = zip(*r["val"], strict=True)
        ax_v.plot(vs, vv, "s-", color="tab:blue", label="symdiff_jax" if i == 0 else None)
        rows.setdefault("ours", []).append((ls, lv, dict(r["val"])))
    ax_l.set(xlabel="step", ylabel="train loss (our scale, 100-step means)", yscale="log")
    ax_v.set(xlabel="step", ylabel="validation NLL (nats, EMA)", yscale="log")
    for ax in (ax_l, ax_v):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"SymDiff :small on QM9, batch {BATCH}, lr {LR:g}, clip {CLIP:g}, EMA {EMA:g} "
        f"({len(off)} official runs, {len(our)} ours)",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png)

    total = min(len(r["loss"]) for r in off)
    per_epoch = _train_size(data) // BATCH
    edges = list(range(per_epoch, total + 1, per_epoch))
    lines = [
        "| step | train loss, official (as logged) | train loss, official (our scale) "
        "| train loss, ours | val NLL, official | val NLL, ours |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for j, e in enumerate(edges):
        raw = [_block_means(s, v, edges)[j] for s, v, _, _ in rows["official"]]
        sc = [_block_means(s, v, edges)[j] for s, _, v, _ in rows["official"]]
        mine = [_block_means(s, v, edges)[j] for s, v, _ in rows["ours"]]
        v_off = [d.get(e, float("nan")) for *_, d in rows["official"]]
        v_our = [d.get(e, float("nan")) for *_, d in rows["ours"]]
        lines.append(
            f"| {e} | {_fmt(raw)} | {_fmt(sc)} | {_fmt(mine)} | {_fmt(v_off, 1)} | {_fmt(v_our, 1)} |"
        )
    lines += [
        "",
        "| run | steps | wall (s) | training (s) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in zip(official, off, strict=True):
        lines.append(f"| official {os.path.basename(name)} | {len(r['loss'])} | "
                     f"{r['wall_s']:.0f} | {r['train_s']:.0f} |")  # fmt: skip
    for name, r in zip(ours, our, strict=True):
        lines.append(f"| ours {os.path.basename(name)} | {r['loss'][-1][0]} | "
                     f"{r['wall_s']:.0f} | {r['train_s']:.0f} |")  # fmt: skip
    lines += [
        "",
        f"Train losses are means over steps ({edges[0]} apart) ending at the row's step; "
        f"the official loss on our scale is `(logged - {conv['c']:.3f}) * {conv['rho']:.3f}` "
        f"(`loss_conversion`). Validation NLL: EMA weights, the {len(rows['official'])}+"
        f"{len(rows['ours'])} runs' mean (min-max); the official histogram of N adds "
        f"{conv['dlogp']:+.4f} nats to an NLL on average relative to ours. Training seconds: "
        "official, the sum of its epoch times (validation excluded); ours, the training loop's "
        "time (compilation and validation included). Wall: the whole process.",
    ]
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["official_main"]:  # inside the official code's Python: no parsing beyond
        rest = argv[1:]
        src = rest[rest.index("--official_src") + 1]
        official_main(src, rest[rest.index("--") + 1 :])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="write EDM-format npz files of fixed subsets of our split")
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=19_200, help="a multiple of the batch, 64")
    p.add_argument("--valid", type=int, default=512)
    p.add_argument("--test", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("official", help="train with the official main_qm9.py")
    p.add_argument("--official_src", required=True, help="the SymDiff source tree")
    p.add_argument("--python", required=True, help="a Python with torch, timm, wandb, rdkit")
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--epochs", type=int, default=4)
    p = sub.add_parser("ours", help="train with experiments.train")
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4)
    p = sub.add_parser("report", help="plot and table from the runs' logs")
    p.add_argument("--official", nargs="+", required=True)
    p.add_argument("--ours", nargs="+", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--md", required=True)
    a = parser.parse_args(argv)

    if a.command == "data":
        print(write_data(a.out, a.train, a.valid, a.test, a.seed))
    elif a.command == "official":
        os.makedirs(a.run, exist_ok=True)
        cmd = official_command(a.python, a.official_src, a.data, "parity", a.epochs)
        print(f"wall {_launch(cmd, a.run, os.path.abspath(a.run)):.0f} s")
    elif a.command == "ours":
        per_epoch = _train_size(a.data) // BATCH
        cmd = ours_command(
            a.data, os.path.join(a.run, "workdir"), a.seed, a.epochs * per_epoch, per_epoch
        )
        env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
        print(f"wall {_launch(cmd, a.run, ROOT, env):.0f} s")
    else:
        report(a.official, a.ours, a.data, a.png, a.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
