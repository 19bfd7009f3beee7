"""Figures (PNG, matplotlib Agg) and tables (CSV) of an ``attnx analyze`` output folder.

Every figure states what is plotted, the units, the model, the data and n, and that layers and heads are
numbered from 0 as in the CSV files (layer on the y axis with layer 0 at the top, head on the x axis);
see :mod:`attnx.report.style` for the conventions.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from attnx import figure as plt
from attnx.errors import AttnxError
from attnx.kernels.names import FEATURE_TITLES, PATTERNS
from attnx.report.style import LAYER_ORIGIN, about_line, annotate_cells, data_name


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
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin=LAYER_ORIGIN)
    ax.set_xticks(range(len(heads)), [str(h) for h in heads], fontsize=7)
    ax.set_yticks(range(len(layers)), [str(v) for v in layers], fontsize=7)
    ax.set_xlabel("head (0-based)")
    ax.set_ylabel("layer (0-based)")
    ax.set_title(title, fontsize=10)
    cb = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(label)
    if annotate and values.size <= 200:
        finite = np.abs(values[np.isfinite(values)])
        small = finite.size and finite.max() < 0.05  # two decimals would print 0.00 everywhere
        fmt = (lambda v: f"{v:.2g}") if small else (lambda v: f"{v:.2f}")
        annotate_cells(ax, im, values, fmt, fontsize=7 if values.size <= 144 else 6)


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
    # 2 x 3 panels (the sixth empty) so cells stay big enough for their values
    fig, grid = plt.subplots(2, 3, figsize=(3 * (1.8 + 0.5 * len(heads)), 2 * (1.4 + 0.42 * len(layers))))
    axes = grid.ravel()
    for ax, name in zip(axes, PATTERNS, strict=False):
        _grid(ax, cols[name], layers, heads, f"{name.replace('_', '+')}: share of maps", "proportion of maps",
              vmin=0, vmax=1, cmap="magma", annotate=len(heads) <= 12)
    for ax in axes[len(PATTERNS):]:
        ax.axis("off")
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


def _layer_ticks(ax, n_layers: int, n_heads: int, layers: list[int]) -> None:  # noqa: ANN001
    """One tick per layer at the middle of its block of heads, and thin lines between layers."""
    centres = [k * n_heads + (n_heads - 1) / 2 for k in range(n_layers)]
    step = max(1, n_layers // 24)
    ax.set_xticks(centres[::step], [str(v) for v in layers[::step]], fontsize=7)
    ax.set_yticks(centres[::step], [str(v) for v in layers[::step]], fontsize=7)
    for k in range(1, n_layers):
        ax.axhline(k * n_heads - 0.5, color="white", lw=0.4, alpha=0.7)
        ax.axvline(k * n_heads - 0.5, color="white", lw=0.4, alpha=0.7)
    ax.set_xlabel(f"layer (0-based; {n_heads} heads each, head 0 first)")
    ax.set_ylabel("layer (0-based; layer 0 at the top)")


def _place_labels(ax, xy: np.ndarray, names: list[str], candidates: np.ndarray, fontsize: float = 6.5) -> int:  # noqa: ANN001
    """Label the points ``candidates`` (in priority order) next to their marker, skipping any label whose box
    would overlap a label already placed or a marker; returns how many were placed."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(xy)
    placed: list = []
    n = 0
    for k in candidates:
        for dx, dy, ha, va in ((4, 3, "left", "bottom"), (-4, 3, "right", "bottom"), (4, -3, "left", "top"),
                               (-4, -3, "right", "top")):
            t = ax.annotate(names[k], xy[k], xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            ha=ha, va=va)
            box = t.get_window_extent(renderer).expanded(1.05, 1.1)
            hits_marker = np.any((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0)
                                 & (pts[:, 1] < box.y1))
            if not hits_marker and not any(box.overlaps(b) for b in placed):
                placed.append(box)
                n += 1
                break
            t.remove()
    return n


def similarity_figures(analysis: Path, out: Path, subtitle: str, n_heads: int) -> list[Path]:
    """Per metric: the (L*H) x (L*H) matrix in layer order (one tick per layer; the clustering is in the
    dendrogram order column of head_clusters_*.csv) and the 2-D MDS of head distances coloured by flat
    cluster, with labels (layer-head) on the heads farthest from their cluster's centre that fit."""
    paths = []
    for metric, label in (("cosine", "mean cosine similarity"), ("js", "mean JS divergence (bits)")):
        f = analysis / f"similarity_{metric}.npy"
        if not f.exists():
            continue
        S = np.load(f)
        with open(analysis / f"head_clusters_{metric}.csv") as fh:
            rows = list(csv.DictReader(fh))
        names = [f"{r['layer']}-{r['head']}" for r in rows]
        layers = sorted({int(r["layer"]) for r in rows}, key=lambda v: [int(r["layer"]) for r in rows].index(v))
        n_layers = len(layers)
        cluster = np.array([int(r["cluster"]) for r in rows])
        n_cl = len(set(cluster))
        fig, axes = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw={"width_ratios": [1.1, 1]})
        im = axes[0].imshow(S, cmap="viridis" if metric == "cosine" else "viridis_r", origin=LAYER_ORIGIN,
                            interpolation="nearest")
        _layer_ticks(axes[0], n_layers, n_heads, layers)
        axes[0].set_title(f"Head similarity ({metric}) between every pair of heads", fontsize=10)
        plt.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04).set_label(label)

        xy = np.array([[float(r["mds_x"]), float(r["mds_y"])] for r in rows])
        sizes = np.bincount(cluster)
        big = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0][:10]
        palette = plt.get_cmap("tab10")
        colour = np.array([palette(big.index(c)) if c in big else (0.6, 0.6, 0.6, 1.0) for c in cluster])
        axes[1].scatter(xy[:, 0], xy[:, 1], c=colour, s=26, edgecolors="white", linewidths=0.4, zorder=3)
        for k, c in enumerate(big):
            plural = "s" if sizes[c] > 1 else ""
            axes[1].scatter([], [], color=palette(k), label=f"cluster {c} ({sizes[c]} head{plural})")
        if n_cl > len(big):
            axes[1].scatter([], [], color=(0.6, 0.6, 0.6), label=f"{n_cl - len(big)} smaller clusters")
        centre = np.array([xy[cluster == c].mean(axis=0) for c in range(cluster.max() + 1)]
                          if cluster.size else np.zeros((0, 2)))
        dist = np.linalg.norm(xy - centre[cluster], axis=1) if cluster.size else np.zeros(0)
        spread = np.ptp(xy, axis=0).max() if len(xy) else 1.0
        lonely = sizes[cluster] == 1
        priority = np.argsort(-(dist / max(spread, 1e-12) + lonely), kind="stable")[: max(12, len(xy) // 6)]
        shown = _place_labels(axes[1], xy, names, priority)
        clusters = f"{n_cl} cluster{'s' if n_cl != 1 else ''}"
        axes[1].set_title(f"2-D classical MDS of head distances, coloured by cluster ({clusters} at cut "
                          f"0.5)\nlabels (layer-head) on the {shown} heads farthest from their cluster centre "
                          "that fit", fontsize=10)
        axes[1].set_xlabel("MDS dimension 1")
        axes[1].set_ylabel("MDS dimension 2")
        axes[1].legend(fontsize=7, loc="best", framealpha=0.8)
        fig.suptitle(subtitle)
        fig.tight_layout()
        p = out / f"similarity_{metric}.png"
        fig.savefig(p, dpi=130)
        plt.close(fig)
        paths.append(p)
        paths.append(_clustered_matrix(S, rows, names, cluster, big, palette, metric, label, subtitle, out))
    return paths


def _clustered_matrix(S: np.ndarray, rows: list[dict], names: list[str], cluster: np.ndarray, big: list[int],  # noqa: PLR0913
                      palette, metric: str, label: str, subtitle: str, out: Path) -> Path:  # noqa: ANN001
    """The similarity matrix in average-linkage (dendrogram) order, with a cluster colour strip and at most
    36 head labels (every k-th, 7 pt) so they stay legible."""
    order = np.argsort([int(r["order"]) for r in rows])
    n = len(order)
    fig, ax = plt.subplots(figsize=(8.5, 8))
    im = ax.imshow(S[np.ix_(order, order)], cmap="viridis" if metric == "cosine" else "viridis_r",
                   interpolation="nearest", extent=(-0.5, n - 0.5, n - 0.5, -0.5))
    strip = np.array([palette(big.index(c)) if c in big else (0.6, 0.6, 0.6, 1.0) for c in cluster[order]])
    ax.imshow(strip[None, :, :], extent=(-0.5, n - 0.5, -0.5 - max(1.0, n / 40), -0.5), aspect="auto")
    ax.set_ylim(n - 0.5, -0.5 - max(1.0, n / 40))
    step = max(1, int(np.ceil(n / 36)))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [names[order[k]] for k in ticks], rotation=90, fontsize=7)
    ax.set_yticks(ticks, [names[order[k]] for k in ticks], fontsize=7)
    every = f"; one label per {step} heads" if step > 1 else ""
    ax.set_xlabel(f"head (layer-head, 0-based), average-linkage order{every}")
    ax.set_title(f"Head similarity ({metric}) in dendrogram order; top strip: cluster (as in the MDS)\n{subtitle}",
                 fontsize=10)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(label)
    fig.tight_layout()
    p = out / f"similarity_{metric}_clustered.png"
    fig.savefig(p, dpi=130)
    plt.close(fig)
    return p


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
    def side(k: str) -> str:
        model = meta.get(f"model_{k}") or "?"
        return (f"{Path(model).name if '/' in str(model) else model} ({meta.get(f'dtype_{k}', '?')}) on "
                f"{data_name(meta.get(f'input_{k}')) or Path(str(meta.get(f'store_{k}', '?'))).name}")

    fig.suptitle(f"A = {side('a')}  vs  B = {side('b')}, n = {meta.get('records', '?')} records "
                 "(Kovaleva et al. Fig. 5)", fontsize=9)
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
    if meta and not meta.get("records"):
        raise AttnxError(f"{analysis}: the analysis covers 0 records; there is nothing to draw")
    model = (meta.get("store_model") or {}).get("name", "?")
    data = data_name(meta.get("store_input")) or Path(meta.get("store", "?")).name
    subtitle = about_line(Path(model).name if "/" in str(model) else model, data, meta.get("records"),
                          "sentences" if meta.get("store_input") else "records")
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
