"""Figures for ablation and importance: a layers x heads grid in the style of Kovaleva et al. (2019, Fig. 6)
and the pruning curve of Michel et al. (2019, Fig. 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    from attnx import figure

    return figure


def head_grid_figure(
    grid: np.ndarray,
    center: float | None,
    path: str | Path,
    marks: np.ndarray | None = None,
    layer_scores: np.ndarray | None = None,
    title: str = "",
    label: str = "score",
    cmap: str = "RdBu",
    subtitle: str = "",
) -> None:
    """Save a PNG of ``grid`` float ``(layers, heads)``, layer 0 at the top like every attnx grid.

    ``center``: value at the neutral colour of a diverging map (the unablated score), None for a
    sequential map. ``marks`` bool ``(layers, heads)``: cells framed and starred. ``layer_scores``
    ``(layers,)``: an extra column for whole-layer ablation. ``subtitle``: model, data and n.
    """
    from matplotlib.colors import TwoSlopeNorm

    from attnx.report.style import LAYER_ORIGIN, annotate_cells, short_number

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
    img = ax.imshow(np.ma.masked_invalid(full), origin=LAYER_ORIGIN, aspect="auto", **kwargs)
    if full.shape[1] <= 26 and layers <= 26:
        annotate_cells(ax, img, full, short_number, fontsize=6)
    if marks is not None:
        for i, j in zip(*np.nonzero(marks), strict=True):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.6, ec="black"))
            ax.text(j + 0.32, i - 0.22, "*", ha="center", va="center", fontsize=8, fontweight="bold")
    ticks = list(range(heads)) + ([heads + 1] if layer_scores is not None else [])
    names = [str(h) for h in range(heads)] + (["layer"] if layer_scores is not None else [])
    ax.set_xticks(ticks, names, fontsize=7)
    ax.set_yticks(range(layers), [str(layer) for layer in range(layers)], fontsize=7)
    ax.set_xlabel("head (0-based)")
    ax.set_ylabel("layer (0-based)")
    if title or subtitle:
        ax.set_title("\n".join(t for t in (title, subtitle) if t), fontsize=9)
    fig.colorbar(img, ax=ax, label=label, shrink=0.85)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def pruning_curve_figure(
    fractions: np.ndarray,
    scores: np.ndarray,
    path: str | Path,
    label: str = "score",
    title: str = "",
    unpruned: float | None = None,
    chance: float | None = None,
    chance_label: str = "majority-class baseline",
    subtitle: str = "",
) -> None:
    """Score (y) against the fraction of heads pruned (x), both ``(steps,)``, with reference lines at the
    unpruned score and at ``chance`` (what predicting the majority class scores)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.plot(100 * fractions, scores, marker="o", label="pruned in importance order", zorder=3)
    if unpruned is not None:
        ax.axhline(unpruned, color="tab:green", ls="--", lw=1, label=f"unpruned ({unpruned:.3f})")
    if chance is not None and np.isfinite(chance):
        ax.axhline(chance, color="tab:red", ls=":", lw=1.2, label=f"{chance_label} ({chance:.3f})")
    ax.set_xlabel("heads pruned (%)")
    ax.set_ylabel(label)
    ax.set_xlim(-2, 102)
    if title or subtitle:
        ax.set_title("\n".join(t for t in (title, subtitle) if t), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
