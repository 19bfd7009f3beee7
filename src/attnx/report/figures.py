"""Figures (PNG, matplotlib Agg) and tables (CSV) of an ``attnx analyze`` output folder.

Every figure states what is plotted, the units, and that layers and heads are numbered from 0 as in
the CSV files (layer on the y axis, head on the x axis).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from attnx.errors import AttnxError  # noqa: E402
from attnx.kernels.patterns import PATTERNS  # noqa: E402

FEATURE_TITLES = {
    "cls": ("Attention to [CLS]", "mean weight"),
    "sep": ("Attention to [SEP] (all)", "mean weight"),
    "sep_max": ("Attention to the most-attended [SEP]", "mean weight"),
    "punct": ("Attention to punctuation", "mean weight"),
    "self": ("Attention to the token itself", "mean weight"),
    "prev": ("Attention to the previous token", "mean weight"),
    "next": ("Attention to the next token", "mean weight"),
    "distance": ("Mean attention distance |i - j|", "tokens"),
    "entropy": ("Row entropy", "nats"),
    "cls_entropy": ("Entropy of the [CLS] row", "nats"),
    "max_weight": ("Max weight per row (confidence)", "mean weight"),
    "own_segment": ("Attention within own segment (pairs)", "mean weight"),
}


def _read_grid(path: Path) -> tuple[list[int], list[int], dict[str, np.ndarray]]:
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    layers = sorted({int(r["layer"]) for r in rows})
    heads = sorted({int(r["head"]) for r in rows})
    li = {v: k for k, v in enumerate(layers)}
    hi = {v: k for k, v in enumerate(heads)}
    cols = [c for c in rows[0] if c not in ("layer", "head")]
    out = {c: np.full((len(layers), len(heads)), np.nan) for c in cols}
    for r in rows:
        for c in cols:
            out[c][li[int(r["layer"])], hi[int(r["head"])]] = float(r[c]) if r[c] not in ("", "nan") else np.nan
    return layers, heads, out


def _grid(ax, values: np.ndarray, layers: list[int], heads: list[int], title: str, label: str,  # noqa: ANN001
          vmin: float | None = None, vmax: float | None = None, cmap: str = "viridis", annotate: bool = True) -> None:
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="upper")
    ax.set_xticks(range(len(heads)), [str(h) for h in heads], fontsize=7)
    ax.set_yticks(range(len(layers)), [str(v) for v in layers], fontsize=7)
    ax.set_xlabel("head (0-based)")
    ax.set_ylabel("layer (0-based)")
    ax.set_title(title, fontsize=10)
    cb = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(label)
    if annotate and values.size <= 200:
        lo, hi = np.nanmin(values), np.nanmax(values)
        for (a, h), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = (v - lo) / (hi - lo + 1e-12) < 0.5
                ax.text(h, a, f"{v:.2f}", ha="center", va="center", fontsize=5.5, color="white" if dark else "black")


def feature_figures(analysis: Path, out: Path, subtitle: str) -> list[Path]:
    layers, heads, cols = _read_grid(analysis / "features.csv")
    paths = []
    for name, values in cols.items():
        title, unit = FEATURE_TITLES.get(name, (name, ""))
        if np.all(np.isnan(values)):
            continue
        fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(heads), 1.4 + 0.45 * len(layers)))
        vmax = 1.0 if unit == "mean weight" else None
        _grid(ax, values, layers, heads, f"{title}\n{subtitle}", unit, vmin=0.0, vmax=vmax)
        fig.tight_layout()
        p = out / f"feature_{name}.png"
        fig.savefig(p, dpi=130)
        plt.close(fig)
        paths.append(p)
    return paths


def pattern_figures(analysis: Path, out: Path, subtitle: str) -> list[Path]:
    layers, heads, cols = _read_grid(analysis / "patterns.csv")
    fig, axes = plt.subplots(1, len(PATTERNS), figsize=(4.2 * len(PATTERNS), 1.8 + 0.45 * len(layers)))
    for ax, name in zip(axes, PATTERNS, strict=True):
        _grid(ax, cols[name], layers, heads, f"{name.replace('_', '+')}: share of maps", "proportion of maps",
              vmin=0, vmax=1, cmap="magma", annotate=len(heads) <= 12)
    fig.suptitle(f"Pattern type proportions per head (Kovaleva et al. 2019, Fig. 2 types) - {subtitle}")
    fig.tight_layout()
    p1 = out / "patterns_per_head.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)
    props = np.stack([cols[n] for n in PATTERNS], axis=-1).mean(axis=1)  # (L, 5): mean over heads
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(layers))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    for k, name in enumerate(PATTERNS):
        ax.bar([str(v) for v in layers], props[:, k], bottom=bottom, label=name.replace("_", "+"), color=colors[k])
        bottom += props[:, k]
    ax.set_xlabel("layer (0-based)")
    ax.set_ylabel("proportion of maps")
    ax.set_ylim(0, 1)
    ax.set_title(f"Pattern types per layer (averaged over heads)\n{subtitle}", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    p2 = out / "patterns_per_layer.png"
    fig.savefig(p2, dpi=130)
    plt.close(fig)
    return [p1, p2]


def similarity_figures(analysis: Path, out: Path, subtitle: str, n_heads: int) -> list[Path]:
    paths = []
    for metric, label in (("cosine", "mean cosine similarity"), ("js", "mean JS divergence (bits)")):
        f = analysis / f"similarity_{metric}.npy"
        if not f.exists():
            continue
        S = np.load(f)
        with open(analysis / f"head_clusters_{metric}.csv") as fh:
            rows = list(csv.DictReader(fh))
        order = np.argsort([int(r["order"]) for r in rows])
        names = [f"{r['layer']}-{r['head']}" for r in rows]
        n_cl = len({r["cluster"] for r in rows})
        fig, axes = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw={"width_ratios": [1.2, 1]})
        im = axes[0].imshow(S[np.ix_(order, order)], cmap="viridis" if metric == "cosine" else "viridis_r")
        step = max(1, len(order) // 48)
        axes[0].set_xticks(range(0, len(order), step), [names[i] for i in order[::step]], rotation=90, fontsize=5)
        axes[0].set_yticks(range(0, len(order), step), [names[i] for i in order[::step]], fontsize=5)
        axes[0].set_title(f"Head similarity ({metric}), heads in average-linkage order\nlabels: layer-head (0-based)")
        plt.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04).set_label(label)
        xy = np.array([[float(r["mds_x"]), float(r["mds_y"])] for r in rows])
        layer_idx = np.array([k // n_heads for k in range(len(rows))])
        sc = axes[1].scatter(xy[:, 0], xy[:, 1], c=layer_idx, cmap="plasma", s=22)
        for k, nm in enumerate(names):
            axes[1].annotate(nm, xy[k], fontsize=4.5, alpha=0.7)
        axes[1].set_title(f"2-D classical MDS of head distances: {n_cl} clusters at cut 0.5")
        axes[1].set_xlabel("MDS dimension 1")
        axes[1].set_ylabel("MDS dimension 2")
        plt.colorbar(sc, ax=axes[1], fraction=0.046, pad=0.04).set_label("layer index")
        fig.suptitle(subtitle)
        fig.tight_layout()
        p = out / f"similarity_{metric}.png"
        fig.savefig(p, dpi=130)
        plt.close(fig)
        paths.append(p)
    return paths


def compare_figure(analysis: Path, out: Path) -> list[Path]:
    f = analysis / "compare.csv"
    if not f.exists():
        return []
    layers, heads, cols = _read_grid(f)
    params = analysis / "compare_params.json"
    meta = json.loads(params.read_text()) if params.exists() else {}
    fig, axes = plt.subplots(1, 2, figsize=(2 + 1.1 * len(heads), 1.6 + 0.5 * len(layers)))
    _grid(axes[0], cols["cosine"], layers, heads, "Cosine similarity of the same records' maps", "mean cosine",
          vmin=0, vmax=1, cmap="RdYlGn")
    _grid(axes[1], cols["max_abs_diff"], layers, heads, "Max |A - B| of any weight", "attention weight", vmin=0,
          cmap="magma")
    fig.suptitle(f"A = {meta.get('store_a', '?')}  vs  B = {meta.get('store_b', '?')}  "
                 f"({meta.get('records', '?')} records; Kovaleva et al. Fig. 5)", fontsize=9)
    fig.tight_layout()
    p = out / "compare.png"
    fig.savefig(p, dpi=130)
    plt.close(fig)
    return [p]


def relation_figure(analysis: Path, out: Path, subtitle: str, top: int = 25) -> list[Path]:
    f = analysis / "relations.csv"
    if not f.exists():
        return []
    with open(f) as fh:
        rows = list(csv.DictReader(fh))[:top]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [float(r["accuracy"]) for r in rows], 0.4, label="best head")
    ax.barh(y + 0.2, [float(r["offset_accuracy"]) for r in rows], 0.4, label="best fixed offset")
    ax.set_yticks(y, [f"{r['relation']} (n={r['count']}; head {r['best_layer']}-{r['best_head']}, "
                      f"offset {r['best_offset']})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy of dependent -> head word (most-attended other word)")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"Dependency relations: best head vs best offset (Clark et al. Table 1)\n{subtitle}", fontsize=10)
    fig.tight_layout()
    p = out / "relations.png"
    fig.savefig(p, dpi=130)
    plt.close(fig)
    return [p]


def make_report(analysis_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Render every figure that ``analysis_dir``'s results allow into ``out_dir`` and copy the tables."""
    analysis = Path(analysis_dir)
    if not (analysis / "params.json").exists() and not (analysis / "compare.csv").exists():
        raise AttnxError(f"{analysis}: no analysis results here (run `attnx analyze` first)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((analysis / "params.json").read_text()) if (analysis / "params.json").exists() else {}
    model = (meta.get("store_model") or {}).get("name", "?")
    subtitle = f"{model}, {meta.get('records', '?')} records of {Path(meta.get('store', '?')).name}"
    paths: list[Path] = []
    if (analysis / "features.csv").exists():
        paths += feature_figures(analysis, out, subtitle)
    if (analysis / "patterns.csv").exists():
        paths += pattern_figures(analysis, out, subtitle)
    paths += similarity_figures(analysis, out, subtitle, len(meta.get("heads", [])) or 12)
    paths += compare_figure(analysis, out)
    paths += relation_figure(analysis, out, subtitle)
    for f in sorted(analysis.glob("*.csv")) + sorted(analysis.glob("*.json")):
        if f.resolve().parent != out.resolve():
            shutil.copy(f, out / f.name)
            paths.append(out / f.name)
    return paths
