"""Merge two independent labellers' pattern labels into consensus labels; measure their agreement.

Inputs: ``labeller_A.csv`` and ``labeller_B.csv`` (columns ``item,label,confidence``; labels
``vertical|diagonal|vertical_diagonal|block|heterogeneous``, confidence ``high|low``), made by two people
who each saw only the blind renders of ``tools/render_label_maps.py --v2`` (item id, single/pair, length;
no layer, head, score or the other's labels), and ``validation/pattern_sample_v2.csv`` (the sample).

Consensus rule (documented in ``validation/README.md``):

* both give the same label -> that label, confidence ``high``;
* they differ and exactly one of them marked ``high`` -> that labeller's label, confidence ``resolved``;
* they differ otherwise (both high or both low) -> label ``disputed``, confidence ``disputed``
  (left out of training and of the consensus scores; still counted in the labeller-vs-labeller numbers).

Split (fixed, seeded, by record so that no sentence or pair is in both): 40 % of the records of each group
(random singles, random pairs, block-candidate pool pairs) go to ``test``, the rest to ``train``.

Writes ``validation/pattern_labels_v2.csv`` (item, label_a, confidence_a, label_b, confidence_b, consensus,
confidence, split) and ``benchmarks/results/labeller_agreement.{json,md}`` (Cohen's kappa overall and by
stratum, per-type agreement, the A x B confusion). Usage::

    python tools/consensus_labels.py --a /work/labels/labeller_A.csv --b /work/labels/labeller_B.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS: tuple[str, ...] = ("vertical", "diagonal", "vertical_diagonal", "block", "heterogeneous")
CONFIDENCE = ("high", "low")
SPLIT_SEED = 2026
TEST_FRACTION = 0.4


def read_labeller(path: Path, items: set[str]) -> dict[str, tuple[str, str]]:
    """``item -> (label, confidence)``; a bad row raises ``SystemExit`` naming file and line."""
    out: dict[str, tuple[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"item", "label", "confidence"} <= {c.strip() for c in reader.fieldnames}:
            raise SystemExit(f"{path}:1: header must have item,label,confidence (got {reader.fieldnames})")
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            where = f"{path}:{reader.line_num}"
            item, label, conf = row["item"], row["label"].lower(), row["confidence"].lower()
            if item not in items:
                raise SystemExit(f"{where}: unknown item {item!r}")
            if label not in LABELS:
                raise SystemExit(f"{where}: label {label!r} is not one of {', '.join(LABELS)}")
            if conf not in CONFIDENCE:
                raise SystemExit(f"{where}: confidence {conf!r} is not high or low")
            if item in out:
                raise SystemExit(f"{where}: item {item} labelled twice")
            out[item] = (label, conf)
    missing = sorted(items - set(out))
    if missing:
        raise SystemExit(f"{path}: {len(missing)} items unlabelled (first: {missing[:5]})")
    return out


def consensus(a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str]:
    """The consensus rule of the module docstring: ``(label, confidence)``."""
    if a[0] == b[0]:
        return a[0], "high"
    if (a[1] == "high") != (b[1] == "high"):
        return (a if a[1] == "high" else b)[0], "resolved"
    return "disputed", "disputed"


def record_split(sample: list[dict[str, str]]) -> dict[str, str]:
    """``item -> train|test``: seeded 40 % of the records of each group (see module docstring) to test."""
    groups: dict[str, list[tuple[str, str]]] = {}
    rec_group: dict[tuple[str, str], str] = {}
    for r in sample:
        key = (r["source"], r["line"])
        kind = "single" if r["len_a"] == r["length"] else "pair"
        group = "pool" if r["stratum"] == "block_candidate" else kind
        rec_group.setdefault(key, group)
    for key, g in rec_group.items():
        groups.setdefault(g, []).append(key)
    test: set[tuple[str, str]] = set()
    rng = np.random.default_rng(SPLIT_SEED)
    for g in sorted(groups):
        keys = sorted(groups[g])
        order = rng.permutation(len(keys))
        test |= {keys[int(k)] for k in order[:round(TEST_FRACTION * len(keys))]}
    return {r["item"]: "test" if (r["source"], r["line"]) in test else "train" for r in sample}


def agreement(ya: list[str], yb: list[str]) -> dict:
    """Cohen's kappa, raw agreement, per-type specific agreement and the A x B confusion (rows A)."""
    from sklearn.metrics import cohen_kappa_score

    k = len(LABELS)
    cm = np.zeros((k, k), np.int64)
    for x, y in zip(ya, yb, strict=True):
        cm[LABELS.index(x), LABELS.index(y)] += 1
    per = {}
    for c, name in enumerate(LABELS):
        n = int(cm[c].sum() + cm[:, c].sum())
        per[name] = {"A": int(cm[c].sum()), "B": int(cm[:, c].sum()), "both": int(cm[c, c]),
                     "specific_agreement": 2 * int(cm[c, c]) / n if n else None}
    n = len(ya)
    return {"n": n, "kappa": float(cohen_kappa_score(ya, yb, labels=list(LABELS))) if n else None,
            "agreement": float(np.trace(cm) / n) if n else None, "per_type": per, "confusion": cm.tolist()}


def markdown(res: dict) -> str:
    short = {"vertical": "vert", "diagonal": "diag", "vertical_diagonal": "v+d", "block": "block",
             "heterogeneous": "het"}
    out = ["# Agreement of the two pattern labellers (MiniLM, v2 sample)", "",
           "| subset | maps | Cohen's kappa | raw agreement |", "|---|---:|---:|---:|"]
    for name, r in res["subsets"].items():
        if r["n"]:
            out.append(f"| {name} | {r['n']} | {r['kappa']:.3f} | {r['agreement']:.3f} |")
    a = res["subsets"]["all"]
    out += ["", "Per type (all maps): maps each labeller gave the type, maps both did, specific agreement "
            "2 x both / (A + B).", "", "| type | A | B | both | specific agreement |", "|---|---:|---:|---:|---:|"]
    for name, p in a["per_type"].items():
        sa = "-" if p["specific_agreement"] is None else f"{p['specific_agreement']:.3f}"
        out.append(f"| {name} | {p['A']} | {p['B']} | {p['both']} | {sa} |")
    out += ["", "Confusion (rows labeller A, columns labeller B):", "",
            "| A \\ B | " + " | ".join(short[n] for n in LABELS) + " |", "|---|" + "---:|" * len(LABELS)]
    out += [f"| {n} | " + " | ".join(str(v) for v in row) + " |" for n, row in zip(LABELS, a["confusion"],
                                                                                  strict=True)]
    c = res["consensus"]
    out += ["", "Consensus: " + ", ".join(f"{k} {v}" for k, v in c["confidence"].items()) + "; labels "
            + ", ".join(f"{k} {v}" for k, v in c["labels"].items()) + ".", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=Path, default=Path("/work/labels/labeller_A.csv"))
    ap.add_argument("--b", type=Path, default=Path("/work/labels/labeller_B.csv"))
    ap.add_argument("--sample", type=Path, default=ROOT / "validation" / "pattern_sample_v2.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "validation" / "pattern_labels_v2.csv")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    sample = list(csv.DictReader(args.sample.open(encoding="utf-8")))
    items = {r["item"] for r in sample}
    la, lb = read_labeller(args.a, items), read_labeller(args.b, items)
    split = record_split(sample)
    rows = []
    for r in sample:
        it = r["item"]
        lab, conf = consensus(la[it], lb[it])
        rows.append({"item": it, "label_a": la[it][0], "confidence_a": la[it][1], "label_b": lb[it][0],
                     "confidence_b": lb[it][1], "consensus": lab, "confidence": conf, "split": split[it]})
    with args.out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    meta = {r["item"]: r for r in sample}
    subsets = {
        "all": lambda r: True,
        "random sample (representative)": lambda r: meta[r["item"]]["stratum"] == "random",
        "block-candidate pool": lambda r: meta[r["item"]]["stratum"] == "block_candidate",
        "single sentences": lambda r: meta[r["item"]]["len_a"] == meta[r["item"]]["length"],
        "sentence pairs": lambda r: meta[r["item"]]["len_a"] != meta[r["item"]]["length"],
        "both labellers high": lambda r: r["confidence_a"] == r["confidence_b"] == "high",
        "held-out test split": lambda r: r["split"] == "test",
    }
    res = {"labeller_a": str(args.a), "labeller_b": str(args.b),
           "subsets": {name: agreement([r["label_a"] for r in rows if f(r)], [r["label_b"] for r in rows if f(r)])
                       for name, f in subsets.items()},
           "consensus": {"confidence": {c: sum(r["confidence"] == c for r in rows)
                                        for c in ("high", "resolved", "disputed")},
                         "labels": {lab: sum(r["consensus"] == lab for r in rows) for lab in (*LABELS, "disputed")}},
           "confidence_marks": {"A_low": sum(v[1] == "low" for v in la.values()),
                                "B_low": sum(v[1] == "low" for v in lb.values())}}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "labeller_agreement.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (args.results / "labeller_agreement.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
