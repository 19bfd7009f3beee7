"""The result files of an analysis: means from a :class:`Partial`'s sums, written as CSV / NPY with params.json.

Each output column can be traced to the sum it comes from (:mod:`attnx.analysis.partial`, filled by
:func:`attnx.analysis.driver.stream_partial`).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from attnx._version import __version__
from attnx.analysis.driver import AnalyzeParams, as_store, supported_analyses
from attnx.analysis.head_clusters import cluster_heads
from attnx.analysis.partial import Partial
from attnx.kernels.names import FEATURE_COLUMNS, PATTERNS, F
from attnx.kernels.pattern_model import PatternModel
from attnx.kernels.similarity import METRICS
from attnx.store import AttentionStore


def feature_means(part: Partial) -> dict[str, np.ndarray]:
    """``(L, H)`` mean of every features.csv column: row sums / rows (``cls_entropy``: / records;
    ``own_segment``: over query rows of sentence pairs only, NaN without pairs)."""
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in FEATURE_COLUMNS:
            s = part.feature_sums[..., F[name]]
            if name == "cls_entropy":
                out[name] = s / part.records
            elif name == "own_segment":
                out[name] = s / part.pair_rows if part.pair_rows else np.full(s.shape, np.nan)
            else:
                out[name] = s / part.rows
    return out


def pattern_uncertainty(part: Partial) -> dict[str, np.ndarray]:
    """``(L, H)`` share of maps whose label's probability is below the model's ``uncertain_below``
    (``uncertain``) and the mean probability of the chosen label (``mean_probability``)."""
    n = np.maximum(part.pattern_counts.sum(axis=-1), 1)
    return {"uncertain": part.pattern_uncertain / n, "mean_probability": part.pattern_prob_sum / n}


def pattern_proportions(part: Partial) -> np.ndarray:
    """``(L, H, 5)`` share of maps of each type per head (rows sum to 1)."""
    tot = part.pattern_counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return part.pattern_counts / np.maximum(tot, 1)


def similarity_means(part: Partial) -> dict[str, np.ndarray]:
    return {m: part.sim_sum[m] / max(part.sim_count[m], 1.0) for m in part.sim_sum}


def relation_table(part: Partial, deprels: list[str], n_heads: int, max_offset: int) -> list[dict]:
    """Clark et al. Table 1 rows: best head and best fixed offset per relation (most frequent first)."""
    rows = []
    if part.rel_count is None:
        return rows
    offsets = np.arange(-max_offset, max_offset + 1)
    for r in np.argsort(-part.rel_count, kind="stable"):
        n = int(part.rel_count[r])
        if n == 0 or r >= len(deprels):
            continue
        acc = part.rel_correct[r] / n
        best = int(np.argmax(acc))
        off_acc = part.rel_offset[r] / n
        off_acc[offsets == 0] = -1
        bo = int(np.argmax(off_acc))
        rows.append(
            {
                "relation": deprels[r],
                "count": n,
                "best_layer": best // n_heads,
                "best_head": best % n_heads,
                "accuracy": float(acc[best]),
                "best_offset": int(offsets[bo]),
                "offset_accuracy": float(off_acc[bo]),
            }
        )
    return rows


def write_grid_csv(path: Path, layers: list[int], heads: list[int], columns: dict[str, np.ndarray]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "head", *columns])
        for a, layer in enumerate(layers):
            for h, head in enumerate(heads):
                w.writerow([layer, head, *(f"{float(v[a, h]):.8g}" for v in columns.values())])


def write_results(
    part: Partial,
    out_dir: str | Path,
    store: AttentionStore | str | Path,
    params: AnalyzeParams | None = None,
    elapsed_s: float | None = None,
) -> list[Path]:
    """Write every result ``part`` holds into ``out_dir`` (the files of ``attnx analyze``); returns them.

    ``store``: the analysed store (path or open store; it names layers, heads and relations). ``params``:
    what was run (default: whatever ``part`` holds: features and patterns when it has feature sums,
    similarity for its metrics, relations when it has relation counts)."""
    store = as_store(store)
    if params is None:
        held = (
            (("features", "patterns") if part.rows and np.any(part.feature_sums) else ())
            + (("similarity",) if part.sim_sum else ())
            + (("relations",) if part.rel_count is not None else ())
        )
        params = AnalyzeParams(only=held, metrics=tuple(part.sim_sum) or METRICS)
    else:  # what was run: the analyses this store can give (relations need CoNLL-U, maps)
        params = replace(params, only=supported_analyses(store, tuple(params.only), warn=False))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    layers, heads = store.layers, store.heads
    if "features" in params.only:
        write_grid_csv(out / "features.csv", layers, heads, feature_means(part))
        written.append(out / "features.csv")
    if "patterns" in params.only:
        prop = pattern_proportions(part)
        write_grid_csv(
            out / "patterns.csv",
            layers,
            heads,
            {**{p: prop[..., k] for k, p in enumerate(PATTERNS)}, **pattern_uncertainty(part)},
        )
        by_layer = part.pattern_counts.sum(axis=1)
        by_layer = by_layer / np.maximum(by_layer.sum(axis=-1, keepdims=True), 1)
        with open(out / "patterns_by_layer.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["layer", *PATTERNS])
            for a, layer in enumerate(layers):
                w.writerow([layer, *(f"{v:.8g}" for v in by_layer[a])])
        written += [out / "patterns.csv", out / "patterns_by_layer.csv"]
    for metric, sim in similarity_means(part).items():
        np.save(out / f"similarity_{metric}.npy", sim)
        written.append(out / f"similarity_{metric}.npy")
        dist = 1.0 - sim if metric == "cosine" else sim
        cl = cluster_heads(dist)
        with open(out / f"head_clusters_{metric}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["layer", "head", "order", "cluster", "mds_x", "mds_y"])
            rank = np.empty_like(cl.order)
            rank[cl.order] = np.arange(len(cl.order))
            for k in range(len(cl.order)):
                w.writerow(
                    [
                        layers[k // len(heads)],
                        heads[k % len(heads)],
                        int(rank[k]),
                        int(cl.labels[k]),
                        f"{cl.mds[k, 0]:.6g}",
                        f"{cl.mds[k, 1]:.6g}",
                    ]
                )
        np.save(out / f"head_linkage_{metric}.npy", cl.linkage)
        written += [out / f"head_clusters_{metric}.csv", out / f"head_linkage_{metric}.npy"]
    if part.rel_count is not None:
        rows = relation_table(part, store.deprels, len(heads), params.max_offset)
        with open(out / "relations.csv", "w", newline="") as fh:
            w = csv.DictWriter(
                fh,
                fieldnames=[
                    "relation",
                    "count",
                    "best_layer",
                    "best_head",
                    "accuracy",
                    "best_offset",
                    "offset_accuracy",
                ],
            )
            w.writeheader()
            for row in rows:
                w.writerow(
                    {
                        **row,
                        "best_layer": layers[row["best_layer"]],
                        "best_head": heads[row["best_head"]],
                        "accuracy": f"{row['accuracy']:.6g}",
                        "offset_accuracy": f"{row['offset_accuracy']:.6g}",
                    }
                )
        np.save(
            out / "relations_accuracy.npy",
            part.rel_correct.reshape(-1, len(layers), len(heads)) / np.maximum(part.rel_count, 1)[:, None, None],
        )
        written += [out / "relations.csv", out / "relations_accuracy.npy"]
    part.save(out / "partial.npz")
    meta = {
        "params": params.to_json(),
        "pattern_model": {
            "source": (m := PatternModel.load(params.pattern_model)).source,
            "sha256_16": m.digest,
            "uncertain_below": m.uncertain_below,
            **m.info.get("training", {}),
        },
        "store": str(store.path),
        "store_model": store.attrs.get("model", {}),
        "store_input": (store.attrs.get("input") or {}).get("path"),
        "store_dtype": store.dtype,
        "layers": layers,
        "heads": heads,
        "deprels": store.deprels,
        "records": part.records,
        "rows": part.rows,
        "attn_bytes": part.attn_bytes,
        "elapsed_s": elapsed_s,
        "attnx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "params.json").write_text(json.dumps(meta, indent=2))
    return [*written, out / "partial.npz", out / "params.json"]
