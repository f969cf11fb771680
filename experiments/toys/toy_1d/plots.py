"""The figures of the 1D reflection toy (paper 000, Fig. 2): losses, errors, samples."""

from __future__ import annotations

import os

import numpy as np

from experiments.toys.toy_1d.model import METHODS


def plot_all(config, workdir, methods, results, gv_times, gv_model, gv_trained, gv_init):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(METHODS, ("tab:red", "tab:blue", "tab:green"), strict=True))

    # Training loss (paper 000, Fig. 2): windowed mean per seed, then mean + 25-75% band.
    fig, ax = plt.subplots(figsize=(7, 4))
    window = max(1, int(config.loss_curve_window))
    for m in methods:
        losses = results[m]["losses"]  # [seeds, steps]
        n = losses.shape[1] // window * window
        win = losses[:, :n].reshape(losses.shape[0], -1, window).mean(-1)
        x = (np.arange(win.shape[1]) + 1) * window
        ax.plot(x, win.mean(0), color=colors[m], label=m)
        ax.fill_between(
            x, np.quantile(win, 0.25, 0), np.quantile(win, 0.75, 0), color=colors[m], alpha=0.25
        )
    ax.set(xlabel="training iteration", ylabel=f"training loss (mean over {window} steps)")
    ax.set_yscale("log")
    ax.set_title("1D reflection toy: training loss (mean over seeds, 25-75% band)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "loss_curves.png"), dpi=120)
    plt.close(fig)

    # Validation error along training.
    fig, ax = plt.subplots(figsize=(7, 4))
    for m in methods:
        errs = results[m]["val_errors"]
        x = (np.arange(errs.shape[1]) + 1) * int(config.eval_every)
        ax.plot(x, np.median(errs, 0), color=colors[m], label=f"{m} (median)")
        ax.fill_between(
            x, np.quantile(errs, 0.25, 0), np.quantile(errs, 0.75, 0), color=colors[m], alpha=0.2
        )
    ax.set(xlabel="training iteration", ylabel="validation mean |x - 1| (x > 0)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "val_error.png"), dpi=120)
    plt.close(fig)

    # Sample histograms: deviation x - sign(x) of the median seed (best checkpoint).
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m in methods:
        seed = int(np.argsort(results[m]["rmsd"])[len(results[m]["rmsd"]) // 2])
        x = results[m]["x"][seed]
        axes[0].hist(x, bins=200, histtype="step", color=colors[m], label=f"{m} (seed {seed})")
        dev = np.abs(x - np.sign(x))
        bins = np.logspace(np.log10(max(dev.min(), 1e-9)), np.log10(max(dev.max(), 1e-8)), 80)
        axes[1].hist(dev, bins=bins, histtype="step", color=colors[m], label=m)
    axes[0].set(xlabel="sample x", ylabel="count", yscale="log", title="samples (median seed)")
    axes[1].set(xlabel="|x - sign(x)|", ylabel="count", xscale="log", title="deviation")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "histograms.png"), dpi=120)
    plt.close(fig)

    # Per-seed metrics.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for a, name in zip(axes, ("rmsd", "w2"), strict=True):
        for j, m in enumerate(methods):
            for k, (suffix, marker) in enumerate((("", "o"), ("_final", "x"))):
                v = results[m][name + suffix]
                jitter = j + 0.15 * (k - 0.5) + np.linspace(-0.05, 0.05, len(v))
                a.scatter(jitter, v, marker=marker, color=colors[m], alpha=0.8)
            a.hlines(np.median(results[m][name]), j - 0.3, j + 0.3, color="k")
        a.set_xticks(range(len(methods)), methods)
        a.set(yscale="log", ylabel=name, title=f"{name} per seed (o best, x final; - median)")
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "per_seed_metrics.png"), dpi=120)
    plt.close(fig)

    # Gradient variance vs t.
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, m in enumerate(METHODS):
        ax.plot(gv_times, np.median(gv_trained[:, :, k], 0), "o-", color=colors[m], label=m)
        ax.plot(gv_times, np.median(gv_init[:, :, k], 0), "o--", color=colors[m], alpha=0.5)
    ax.set(xlabel="t", ylabel="tr Cov of per-example gradient", yscale="log")
    ax.set_title(f"gradient variance (solid: trained {gv_model}, dashed: init)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "grad_variance.png"), dpi=120)
    plt.close(fig)
