"""The figures of the 2D toy (paper 000, Fig. 3): training loss, samples, RMSD vs steps."""

from __future__ import annotations

import os

import numpy as np


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    width = max(1, min(width, len(values)))
    return np.convolve(values, np.ones(width) / width, mode="valid")


def plot_results(workdir: str, losses, samples, rmsd_curves, x0: np.ndarray, steps) -> None:
    """Writes `toy_2d.png` (the three panels of Fig. 3) and one file per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"baseline": "tab:blue", "symmetrised": "tab:red", "oracle": "tab:gray"}
    labels = {
        "baseline": "data target (eq. 3)",
        "symmetrised": "symmetrised target (eq. 4)",
        "oracle": "exact phi_G (no network)",
    }

    def loss_panel(ax):
        for m, curve in losses.items():
            first = curve[: min(1000, len(curve))]
            ax.plot(
                np.arange(len(first)), first, color=colours[m], alpha=0.7, lw=0.8, label=labels[m]
            )
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss")
        ax.set_title("(a) training loss, first 1k steps")
        ax.legend()

    def samples_panel(ax):
        learned = {m: v for m, v in samples.items() if m != "oracle"}
        for i, (m, pts) in enumerate(learned.items()):
            offset = np.array([0.0, 1.2 * (0.5 - i)]) * 2
            for p in x0:
                ax.add_patch(plt.Circle(p + offset, 0.1, color="tab:brown", fill=False, lw=1.2))
            flat = pts.reshape(-1, 2) + offset
            ax.scatter(flat[:, 0], flat[:, 1], s=3, color=colours[m], alpha=0.5, label=labels[m])
        ax.set_aspect("equal")
        ax.set_title("(b) aligned samples; circles: ground truth")
        ax.legend(loc="center", fontsize=7)

    def rmsd_panel(ax):
        for m, curve in rmsd_curves.items():
            style = "--" if m == "oracle" else "o-"
            ax.plot(steps, curve, style, color=colours[m], label=labels[m])
        ax.set_yscale("log")
        ax.set_xlabel("DDIM steps")
        ax.set_ylabel("aligned RMSD")
        ax.set_title("(c) RMSD vs sampling steps")
        ax.legend()

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, panel in zip(axes, (loss_panel, samples_panel, rmsd_panel), strict=True):
        panel(ax)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "toy_2d.png"), dpi=120)
    plt.close(fig)
    for name, panel in (
        ("training_loss.png", loss_panel),
        ("samples.png", samples_panel),
        ("rmsd_vs_steps.png", rmsd_panel),
    ):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        panel(ax)
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, name), dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    width = max(1, len(next(iter(losses.values()))) // 200)
    for m, curve in losses.items():
        ax.plot(_smooth(curve, width), color=colours[m], label=labels[m])
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training loss (moving average over {width})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "training_loss_full.png"), dpi=120)
    plt.close(fig)
