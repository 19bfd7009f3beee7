"""One attention map as a labelled heatmap (PNG)."""

from __future__ import annotations

import numpy as np

# word-start markers of byte-level BPE (RoBERTa: "Ġ") and SentencePiece (XLM-R, ALBERT: "▁"), shown as "_"
_WORD_MARKERS = str.maketrans({"\u0120": "_", "\u2581": "_"})


def display_token(piece: str) -> str:
    """A token as a reader wants it on an axis: word-start markers of BPE/SentencePiece vocabularies as "_"."""
    return piece.translate(_WORD_MARKERS)


def render_map(attn: np.ndarray, tokens: list[str], path: str, title: str = "", max_labels: int = 80) -> None:
    """Draw ``attn`` (l, l), rows = queries, columns = keys, with token labels, to ``path``."""
    tokens = [display_token(t) for t in tokens]
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
