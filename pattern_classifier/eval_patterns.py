"""Evaluate the hand-set rule classifier (the baseline) against the v1 hand-labelled MiniLM maps in ``validation/``.

The learned classifier that ``attnx analyze`` runs is trained and evaluated by ``pattern_classifier/train_patterns.py``.

Rebuilds the labelled sample with ``pattern_classifier/render_label_maps.py`` (same seed, same source lines, same
layer/head), re-extracts it with the real MiniLM model into a temporary store, runs the project's pattern
classifier exactly as ``attnx analyze`` does (:func:`attnx.analysis.driver.block_maps` ->
:func:`attnx.analysis.driver.block_patterns`, i.e. the numba feature kernel, ``per_map_means`` and
:func:`attnx.kernels.patterns.classify_maps`), and reports, separately for the ``test`` and ``tune``
splits: accuracy, macro-F1 (over the classes present in the gold labels or the predictions), per-class
precision / recall / F1 and the 5 x 5 confusion matrix (rows = hand label, columns = prediction).

Writes ``pattern_classifier/results/patterns_eval.json`` (metrics, thresholds used, and per-item predictions with
the classifier's chance-corrected scores, for threshold tuning on ``tune`` only) and
``pattern_classifier/results/patterns_eval.md``; prints the markdown.

Usage::

    python pattern_classifier/eval_patterns.py                      # packaged thresholds
    python pattern_classifier/eval_patterns.py --thresholds my.json --workdir /tmp/attnx_eval  # reuse a store
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS_CSV = ROOT / "validation" / "pattern_labels.csv"
RESULTS = ROOT / "pattern_classifier" / "results"


def _load_tool() -> ModuleType:
    """Import ``pattern_classifier/render_label_maps.py`` (not a package) for its sampling code."""
    path = ROOT / "pattern_classifier" / "render_label_maps.py"
    spec = importlib.util.spec_from_file_location("render_label_maps", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def read_labels(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def predict(store_path: Path, thresholds_path: str | None) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Codes ``(N, L, H)`` int8 and scores (each ``(N, L, H)``) of every map of the store, input order."""
    import attnx
    from attnx.analysis.driver import block_maps, record_shape_info
    from attnx.kernels.features import per_map_means
    from attnx.kernels.patterns import Thresholds, classify_maps, pattern_scores

    thr = Thresholds.load(thresholds_path)
    store = attnx.open_store(store_path)
    n_l, n_h = store.n_layers, store.n_heads
    codes = np.full((len(store), n_l, n_h), -1, np.int8)
    names = ("vertical", "diagonal", "own_segment", "entropy_norm")
    scores = {k: np.full((len(store), n_l, n_h), np.nan) for k in names}
    for block in store.blocks():
        sums = block_maps(block, n_l, n_h)
        ids = np.asarray(block.record_ids, np.int64)
        la, n_stripe = record_shape_info(block)
        shp = (-1, 1, 1)
        codes[ids] = classify_maps(per_map_means(sums, block.lengths), block.lengths.reshape(shp), la.reshape(shp),
                                   n_stripe.reshape(shp), thr)
        sc = pattern_scores(per_map_means(sums, block.lengths), block.lengths.reshape(shp), la.reshape(shp),
                            n_stripe.reshape(shp))
        for k in names:
            scores[k][ids] = sc[k]
    return codes, scores, thr.to_json()


def metrics(gold: list[int], pred: list[int], n_classes: int, names: tuple[str, ...]) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix (rows gold, cols pred)."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    for g, p in zip(gold, pred, strict=True):
        cm[g, p] += 1
    per: dict[str, dict] = {}
    f1s = []
    for k, name in enumerate(names):
        tp, n_pred, n_gold = int(cm[k, k]), int(cm[:, k].sum()), int(cm[k].sum())
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_gold if n_gold else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[name] = {"precision": prec, "recall": rec, "f1": f1, "support": n_gold, "predicted": n_pred}
        if n_gold or n_pred:
            f1s.append(f1)
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "macro_f1_classes": [names[k] for k in range(n_classes) if cm[k].sum() or cm[:, k].sum()],
        "per_class": per,
        "confusion": cm.tolist(),
    }


def markdown(results: dict[str, dict], names: tuple[str, ...]) -> str:
    """Markdown tables of the metrics per split."""
    short = {"vertical": "vert", "diagonal": "diag", "vertical_diagonal": "v+d", "block": "block",
             "heterogeneous": "het"}
    out = []
    for split, m in results.items():
        out.append(f"### split `{split}` (n = {m['n']})\n")
        out.append(f"accuracy **{m['accuracy']:.3f}**, macro-F1 **{m['macro_f1']:.3f}** "
                   f"(over {', '.join(m['macro_f1_classes'])})\n")
        out.append("| class | support | predicted | precision | recall | F1 |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for name in names:
            c = m["per_class"][name]
            out.append(f"| {name} | {c['support']} | {c['predicted']} | {c['precision']:.3f} | "
                       f"{c['recall']:.3f} | {c['f1']:.3f} |")
        out.append("")
        out.append("| hand label \\ predicted | " + " | ".join(short[n] for n in names) + " |")
        out.append("|---|" + "---:|" * len(names))
        for name, row in zip(names, m["confusion"], strict=True):
            out.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", default=str(LABELS_CSV))
    ap.add_argument("--seed", type=int, default=None, help="sample seed (default: the tool's, 2019)")
    ap.add_argument("--thresholds", default=None, help="thresholds JSON (default: the packaged file)")
    ap.add_argument("--workdir", default=None, help="folder for the temp TSV + store (reused if present)")
    ap.add_argument("--out", default=str(RESULTS), help="folder for patterns_eval.json / .md")
    args = ap.parse_args(argv)

    from attnx.kernels.patterns import PATTERNS

    tool = _load_tool()
    sample = tool.build_sample(args.seed if args.seed is not None else tool.DEFAULT_SEED)
    rows = read_labels(Path(args.labels))
    by_item = {it.item: it for it in sample.items}
    if {r["item"] for r in rows} != set(by_item):
        raise SystemExit("labels CSV and rebuilt sample have different items (wrong seed?)")
    for r in rows:
        want = sample.row(by_item[r["item"]])
        if any(str(want[k]) != r[k] for k in tool.SAMPLE_FIELDS):
            raise SystemExit(f"{r['item']}: labels CSV does not match the rebuilt sample ({want} vs {r})")

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="attnx_eval_patterns_"))
    store_path = tool.extract_sample(sample, workdir)
    codes, scores, thr = predict(store_path, args.thresholds)

    code_of = {name: k for k, name in enumerate(PATTERNS)}
    items = []
    for r in rows:
        it = by_item[r["item"]]
        pred = int(codes[it.record, it.layer, it.head])
        items.append({
            "item": it.item, "split": r["split"], "pair": r["source"] != tool.SINGLE_SOURCE,
            "layer": it.layer, "head": it.head, "label": r["label"], "predicted": PATTERNS[pred],
            **{k: round(float(v[it.record, it.layer, it.head]), 4) for k, v in scores.items()},
        })
    results = {}
    for split in ("test", "tune", "all"):
        sel = [x for x in items if split == "all" or x["split"] == split]
        results[split] = metrics([code_of[x["label"]] for x in sel], [code_of[x["predicted"]] for x in sel],
                                 len(PATTERNS), PATTERNS)
    md = "# Pattern classifier vs hand labels (MiniLM)\n\n" + markdown(results, PATTERNS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"labels": str(Path(args.labels).relative_to(ROOT)) if Path(args.labels).is_absolute()
              and Path(args.labels).is_relative_to(ROOT) else args.labels,
              "thresholds": thr, "classes": list(PATTERNS), "results": results, "items": items}
    (out / "patterns_eval.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "patterns_eval.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
