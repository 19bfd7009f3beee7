"""One attention map as a labelled heatmap (PNG)."""

from __future__ import annotations

import numpy as np


def render_map(attn: np.ndarray, tokens: list[str], path: str, title: str = "", max_labels: int = 80) -> None:
    """Draw ``attn`` (l, l), rows = queries, columns = keys, with wordpiece labels, to ``path``."""
    from attnx import figure as plt

    l = attn.shape[0]
    size = min(4 + l * 0.18, 18)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(attn, cmap="viridis", vmin=0.0, vmax=max(float(attn.max()), 1e-6), interpolation="nearest")
    if l <= max_labels:
        ax.set_xticks(range(l), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(l), tokens, fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
