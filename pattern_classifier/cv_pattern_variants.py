"""Paired cross-validation of variants of the learned pattern classifier on all v2 + v3 labelled maps (issue 10).

``train_patterns.py --data all`` chooses among its fixed candidates (logistic C grid, trees, forest, CNN) trained on
the consensus labels. This script compares, on the same CV splits, the variants that need more than a candidate
list: which labels are trained on, class weights, extra per-map features derived from the kernel's existing
per-map means (no new kernel feature), quadratic terms, a small MLP and gradient-boosted trees.

Protocol: every map of v2 + v3 (disputed ones too, so soft-label variants can use them) is split by record into
5 folds, ``--repeats`` times (``GroupKFold(shuffle=True, random_state=repeat)``); each variant is trained on the
training folds and scored on the non-disputed maps of the held-out fold against the consensus; macro-F1 of the
pooled out-of-fold predictions of each repeat; mean, sd over repeats, and the paired difference to the baseline
(version 5's setting: logistic regression C = 10 on the 22 design features, consensus labels) per repeat.
No v4 map is read. Writes ``pattern_classifier/results/patterns_cv_variants.{json,md}``. ``--data all4`` runs the
version-7 candidates (:func:`variants_all4`: C grid, the 11 extra features, the diagonal-vs-column features) the
same way on every v2 + v3 + v4 map, baseline version 6's setting, into ``patterns_cv_variants_v7.{json,md}`` (no v5
map is read). Usage::

    python pattern_classifier/cv_pattern_variants.py --repeats 10
    python pattern_classifier/cv_pattern_variants.py --data all4 --repeats 10
    python pattern_classifier/cv_pattern_variants.py --repeats 10 --only 'logreg|soft'
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pattern_classifier"))
import train_patterns as tp  # noqa: E402

from attnx.kernels.features import F  # noqa: E402
from attnx.kernels.patterns import PATTERNS  # noqa: E402

BASELINE = "v5 setting: logreg C=10, consensus"
EXTRA = ("sep", "sep_max", "punct", "cls_vis", "colmax_vis", "self_vis", "prev_vis", "next_vis", "maxw_vis",
         "log_map_max", "inv_len")


def extra_features(means: np.ndarray, shape_info: np.ndarray) -> np.ndarray:
    """Candidate features ``(N, len(EXTRA))`` from the per-map means ``(N, NF)`` and per-map ``(length, len_a,
    n_stripe)`` ``(N, 3)``: raw [SEP] / punctuation shares, and the mean weight of the [CLS] column, the strongest
    column, each diagonal and the row maxima over the map's largest weight (brightness on a panel drawn 0..max)."""
    mmax = np.maximum(means[:, F["map_max"]], 1e-12)

    def vis(name: str) -> np.ndarray:
        return np.clip(means[:, F[name]] / mmax, 0.0, 1.0)

    cols = [means[:, F["sep"]], means[:, F["sep_max"]], means[:, F["punct"]], vis("cls"), vis("col_max"), vis("self"),
            vis("prev"), vis("next"), vis("max_weight"), np.log(mmax), 1.0 / shape_info[:, 0]]
    return np.stack(cols, axis=1)


DIAGCOL = ("diag_col", "diag_cls")


def diag_col_features(means: np.ndarray) -> np.ndarray:
    """Diagonal vs column brightness ``(N, 2)`` from the per-map means ``(N, NF)``: the strongest single diagonal's
    mean row mass (self, previous or next) over itself plus the strongest column's (``diag_col``) and plus the
    [CLS] column's (``diag_cls``); 1 = only a diagonal, 0 = only a column, 0.5 = equally bright (0.5 for an
    all-zero map). Aimed at the v4 errors: vertical_diagonal maps called diagonal (a visible column under a
    brighter diagonal)."""
    top = np.maximum(np.maximum(means[:, F["self"]], means[:, F["prev"]]), means[:, F["next"]])

    def ratio(col: np.ndarray) -> np.ndarray:
        tot = top + col
        return np.where(tot > 1e-12, top / np.maximum(tot, 1e-12), 0.5)

    return np.stack([ratio(means[:, F["col_max"]]), ratio(means[:, F["cls"]])], axis=1)


def _lr(c: float, cw: str | None = None) -> object:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=10000, class_weight=cw))


def _gbt() -> object:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_depth=3, max_iter=150, learning_rate=0.1, min_samples_leaf=5,
                                          random_state=0)


BASELINE_V7 = "v6 setting: logreg C=10, 22 features"


def variants_all4() -> dict[str, tuple[object, str, str]]:
    """The version-7 candidates (CV on all v2 + v3 + v4 maps, consensus labels): the C grid, the 11 extra features,
    the diagonal-vs-column features, and the two together; version 6's setting first (the baseline)."""
    out: dict[str, tuple[object, str, str]] = {BASELINE_V7: (_lr(10), "design", "consensus")}
    for c in (1, 3, 30, 100):
        out[f"logreg C={c}, 22 features"] = (_lr(c), "design", "consensus")
    for c in (3, 10, 30):
        out[f"logreg C={c} + 11 extra features"] = (_lr(c), "design+extra", "consensus")
    for c in (3, 10, 30):
        out[f"logreg C={c} + diag/col (2)"] = (_lr(c), "design+diagcol", "consensus")
    for c in (3, 10):
        out[f"logreg C={c} + 11 extra + diag/col (13)"] = (_lr(c), "design+extra+diagcol", "consensus")
    out["gbt depth=3, 22 features"] = (_gbt(), "design", "consensus")
    return out


def variants() -> dict[str, tuple[object, str, str]]:
    """name -> (unfitted model, feature set ``design`` | ``design+extra``, labels ``consensus`` | ``soft`` |
    ``soft_balanced``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    out: dict[str, tuple[object, str, str]] = {BASELINE: (_lr(10), "design", "consensus")}
    for c in (1, 3, 30):
        out[f"logreg C={c}, consensus"] = (_lr(c), "design", "consensus")
    out["logreg C=10 balanced, consensus"] = (_lr(10, "balanced"), "design", "consensus")
    for c in (3, 10, 30):
        out[f"logreg C={c}, soft A+B"] = (_lr(c), "design", "soft")
    out["logreg C=10, soft A+B, class-balanced weights"] = (_lr(10), "design", "soft_balanced")
    for c in (3, 10):
        out[f"logreg C={c} + 11 extra features, consensus"] = (_lr(c), "design+extra", "consensus")
        out[f"logreg C={c} + 11 extra features, soft A+B"] = (_lr(c), "design+extra", "soft")
    for c in (0.1, 0.3, 1.0):
        out[f"logreg C={c} on quadratic terms, consensus"] = (make_pipeline(
            StandardScaler(), PolynomialFeatures(2, include_bias=False), StandardScaler(),
            LogisticRegression(C=c, max_iter=20000)), "design", "consensus")
    out["gbt depth=3, consensus"] = (_gbt(), "design", "consensus")
    for h, a in ((16, 0.01), (32, 0.01), (32, 0.1), (16, 1.0)):
        out[f"mlp {h} hidden, alpha={a}, consensus"] = (make_pipeline(
            StandardScaler(), MLPClassifier((h,), alpha=a, max_iter=3000, random_state=0)), "design", "consensus")
    return out


def _fit(model: object, x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> object:
    from sklearn.base import clone

    m = clone(model)
    if w is None:
        return m.fit(x, y)
    return m.fit(x, y, **{m.steps[-1][0] + "__sample_weight": w})  # pipelines: weight the last step


def run(d: dict, repeats: int, only: str | None, data: str = "all") -> dict:
    """The paired CV of the module docstring on the items ``d`` of ``train_patterns.load_items(data)``
    (``all``: the version-6 variants; ``all4``: the version-7 ones, :func:`variants_all4`)."""
    from sklearn.model_selection import GroupKFold

    y, ya, yb, g = d["y_consensus"], d["y_A"], d["y_B"], d["record"]
    usable = y >= 0
    ext, dc = extra_features(d["means"], d["shape_info"]), diag_col_features(d["means"])
    feats = {"design": d["x"], "design+extra": np.concatenate([d["x"], ext], axis=1),
             "design+diagcol": np.concatenate([d["x"], dc], axis=1),
             "design+extra+diagcol": np.concatenate([d["x"], ext, dc], axis=1)}
    splits = [list(GroupKFold(5, shuffle=True, random_state=r).split(d["x"], y, g)) for r in range(repeats)]
    rows = []
    cands = variants_all4() if data == "all4" else variants()
    baseline = next(iter(cands))
    for name, (model, fset, labels) in cands.items():
        if only is not None and name != baseline and not re.search(only, name):
            continue
        x = feats[fset]
        t0 = time.perf_counter()
        per_rep = []
        per_set: dict[str, list[dict]] = {str(k): [] for k in np.unique(d["set"])}
        for cv in splits:
            pred = np.full(len(y), -1)
            for tr, te in cv:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if labels == "consensus":
                        t = tr[usable[tr]]
                        m = _fit(model, x[t], y[t], None)
                    else:  # each map twice, once per labeller, weight 0.5 each (disputed maps included)
                        yt = np.concatenate([ya[tr], yb[tr]])
                        w = np.full(len(yt), 0.5)
                        if labels == "soft_balanced":
                            cnt = np.bincount(yt, weights=w, minlength=len(PATTERNS))
                            w = w * (w.sum() / (len(PATTERNS) * np.maximum(cnt, 1e-9)))[yt]
                        m = _fit(model, np.concatenate([x[tr], x[tr]]), yt, w)
                te = te[usable[te]]
                pred[te] = tp._proba_full(m, x[te]).argmax(axis=1)
            per_rep.append(tp.scores(y[usable], pred[usable]))
            for k in per_set:  # the same out-of-fold predictions, scored per labelled set
                sel = usable & (d["set"] == k)
                per_set[k].append(tp.scores(y[sel], pred[sel]))
        macro = np.array([s["macro_f1"] for s in per_rep])
        f1 = {k: round(float(np.mean([s["per_class"][k]["f1"] for s in per_rep])), 3) for k in PATTERNS}
        rows.append({"variant": name, "features": fset, "labels": labels, "macro_f1": float(macro.mean()),
                     "macro_f1_sd": float(macro.std()), "macro_f1_runs": [round(v, 4) for v in macro], "f1": f1,
                     "per_set": {k: {"macro_f1": round(float(np.mean([s["macro_f1"] for s in v])), 4),
                                     "macro_f1_sd": round(float(np.std([s["macro_f1"] for s in v])), 4),
                                     "f1": {c: round(float(np.mean([s["per_class"][c]["f1"] for s in v])), 3)
                                            for c in PATTERNS}} for k, v in per_set.items()},
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"  {name:50s} {macro.mean():.4f} ({macro.std():.4f})", flush=True)
    base = np.array(rows[0]["macro_f1_runs"])
    for r in rows:
        diff = np.array(r["macro_f1_runs"]) - base
        r["paired_diff"], r["paired_sd"], r["wins"] = float(diff.mean()), float(diff.std()), int((diff > 0).sum())
    return {"data": data, "items": int(len(y)), "usable": int(usable.sum()), "records": int(len(np.unique(g))),
            "repeats": repeats, "baseline": baseline, "extra_features": list(EXTRA), "diag_col_features": list(DIAGCOL),
            "rows": rows}


def markdown(res: dict) -> str:
    sets = "v2 + v3 + v4" if res.get("data") == "all4" else "v2 + v3"
    out = [f"# Pattern classifier variants: {res['repeats']} x 5-fold CV grouped by record on all {sets} maps", "",
           f"{res['usable']} non-disputed maps scored against the consensus ({res['items']} maps, {res['records']} "
           f"records; load {res['load'][0]:.1f} before, {res['load_after'][0]:.1f} after). Paired difference: "
           "variant minus the baseline per repeat (same splits); wins = repeats where the variant is ahead.", "",
           "| variant | macro-F1 (sd) | paired diff (sd) | wins | "
           + " | ".join(tp.SHORT[k] for k in PATTERNS) + " |", "|---|---:|---:|---:|" + "---:|" * len(PATTERNS)]
    for r in res["rows"]:
        out.append(f"| {r['variant']} | {r['macro_f1']:.3f} ({r['macro_f1_sd']:.3f}) | {r['paired_diff']:+.3f} "
                   f"({r['paired_sd']:.3f}) | {r['wins']} | " + " | ".join(f"{r['f1'][k]:.2f}" for k in PATTERNS)
                   + " |")
    sets = list(res["rows"][0].get("per_set", {}))
    if sets:
        out += ["", "The same out-of-fold predictions scored per labelled set (macro-F1, sd over repeats; "
                "diagonal F1):", "", "| variant | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
        for r in res["rows"]:
            cells = [f"{p['macro_f1']:.3f} ({p['macro_f1_sd']:.3f}); diag {p['f1']['diagonal']:.2f}"
                     for p in (r["per_set"][k] for k in sets)]
            out.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/attnx_train_patterns"))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--data", choices=["all", "all4"], default="all",
                    help="all: v2 + v3 (the version-6 variants); all4: v2 + v3 + v4 (the version-7 variants, "
                         "written to patterns_cv_variants_v7.*)")
    ap.add_argument("--only", default=None, help="variants matching this regex (the baseline always runs)")
    ap.add_argument("--out", type=Path, default=tp.RESULTS)
    args = ap.parse_args(argv)
    d = tp.load_items(args.data, args.workdir)
    load = tp._load()
    res = run(d, args.repeats, args.only, args.data)
    res["load"], res["load_after"] = load, tp._load()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "patterns_cv_variants" + ("_v7" if args.data == "all4" else "")
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (args.out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
