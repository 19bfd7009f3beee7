"""Figures for ablation and importance: a layers x heads grid in the style of Kovaleva et al. (2019, Fig. 6)
and the pruning curve of Michel et al. (2019, Fig. 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def head_grid_figure(
    grid: np.ndarray,
    center: float | None,
    path: str | Path,
    marks: np.ndarray | None = None,
    layer_scores: np.ndarray | None = None,
    title: str = "",
    label: str = "score",
    cmap: str = "RdBu",
) -> None:
    """Save a PNG of ``grid`` float ``(layers, heads)``, layer 0 at the bottom like the paper's figure.

    ``center``: value at the neutral colour of a diverging map (the unablated score), None for a
    sequential map. ``marks`` bool ``(layers, heads)``: cells framed and starred. ``layer_scores``
    ``(layers,)``: an extra column for whole-layer ablation.
    """
    from matplotlib.colors import TwoSlopeNorm

    plt = _plt()
    layers, heads = grid.shape
    full = (
        grid
        if layer_scores is None
        else np.concatenate([grid, np.full((layers, 1), np.nan), layer_scores[:, None]], 1)
    )
    finite = full[np.isfinite(full)]
    if center is not None and finite.size:
        span = max(float(np.abs(finite - center).max()), 1e-6)
        norm = TwoSlopeNorm(vcenter=center, vmin=center - span, vmax=center + span)
        kwargs = {"norm": norm, "cmap": cmap}
    else:
        kwargs = {"cmap": "viridis"}
    fig, ax = plt.subplots(figsize=(0.55 * full.shape[1] + 2.2, 0.45 * layers + 1.6))
    img = ax.imshow(np.ma.masked_invalid(full), origin="lower", aspect="auto", **kwargs)
    small = full.shape[1] <= 26 and layers <= 26
    for i in range(layers):
        for j in range(full.shape[1]):
            if np.isfinite(full[i, j]) and small:
                ax.text(
                    j,
                    i,
                    f"{full[i, j]:.2f}"[1:] if 0 <= full[i, j] < 1 else f"{full[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                )
    if marks is not None:
        for i, j in zip(*np.nonzero(marks), strict=True):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.6, ec="black"))
            ax.text(j + 0.32, i + 0.22, "*", ha="center", va="center", fontsize=8, fontweight="bold")
    ticks = list(range(heads)) + ([heads + 1] if layer_scores is not None else [])
    names = [str(h) for h in range(heads)] + (["layer"] if layer_scores is not None else [])
    ax.set_xticks(ticks, names, fontsize=7)
    ax.set_yticks(range(layers), [str(layer) for layer in range(layers)], fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(img, ax=ax, label=label, shrink=0.85)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def pruning_curve_figure(
    fractions: np.ndarray, scores: np.ndarray, path: str | Path, label: str = "score", title: str = ""
) -> None:
    """Score (y) against the fraction of heads pruned (x), both ``(steps,)``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(100 * fractions, scores, marker="o")
    ax.set_xlabel("heads pruned (%)")
    ax.set_ylabel(label)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
