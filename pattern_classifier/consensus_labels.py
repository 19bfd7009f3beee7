"""Merge two independent labellers' pattern labels into consensus labels; measure their agreement.

Inputs: ``labeller_A.csv`` and ``labeller_B.csv`` (columns ``item,label,confidence``; labels
``vertical|diagonal|vertical_diagonal|block|heterogeneous``, confidence ``high|low``), made by two people
who each saw only the blind renders of ``pattern_classifier/render_label_maps.py --v2`` (item id, single/pair, length;
no layer, head, score or the other's labels), and ``validation/pattern_sample_v2.csv`` (the sample).

Consensus rule (documented in ``validation/README.md``):

* both give the same label -> that label, confidence ``high``;
* they differ and exactly one of them marked ``high`` -> that labeller's label, confidence ``resolved``;
* they differ otherwise (both high or both low) -> label ``disputed``, confidence ``disputed``
  (left out of training and of the consensus scores; still counted in the labeller-vs-labeller numbers).

Split (fixed, seeded, by record so that no sentence or pair is in both): v2: 40 % of the records of each group
(random singles, random pairs, block-candidate pool pairs) go to ``test``, the rest to ``train``; v3: 50 % of
the records of each group (records with a block candidate, control-only records), seed 2027.

Writes ``validation/pattern_labels_v2.csv`` (item, label_a, confidence_a, label_b, confidence_b, consensus,
confidence, split) and ``pattern_classifier/results/labeller_agreement.{json,md}`` (Cohen's kappa overall and by
stratum, per-type agreement, the A x B confusion). ``--set v3`` does the same for the block sample
``validation/block_sample_v3.csv`` (labels ``validation/pattern_labels_v3_{A,B}.csv``) into
``validation/pattern_labels_v3.csv`` and ``pattern_classifier/results/labeller_agreement_v3.{json,md}``, which also
give the per-type counts of v2 and v3 together. ``--set v4`` merges the fresh test sample
``validation/pattern_sample_v4.csv`` (labels ``/work/labels/v4_labeller_{A,B}.csv``) into
``validation/pattern_labels_v4.csv``: every item is ``test`` (the set is not trained on before its one look),
agreement by stratum (random / block candidates) in ``pattern_classifier/results/labeller_agreement_v4.{json,md}``;
``--set v5`` does the same for the second fresh sample ``validation/pattern_sample_v5.csv`` (labels
``/work/labels/v5_labeller_{A,B}.csv``) into ``validation/pattern_labels_v5.csv`` and
``pattern_classifier/results/labeller_agreement_v5.{json,md}``, and ``--set v6`` for the third. Usage::

    python pattern_classifier/consensus_labels.py --a /work/labels/labeller_A.csv --b /work/labels/labeller_B.csv
    python pattern_classifier/consensus_labels.py --set v3
    python pattern_classifier/consensus_labels.py --set v4
    python pattern_classifier/consensus_labels.py --set v5
    python pattern_classifier/consensus_labels.py --set v6
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


def fresh_set(name: str, seed: int) -> dict:
    """Default paths of a fresh test sample drawn by ``pattern_classifier/sample_fresh_test_set.py`` (v4, v5, ...):
    labels ``/work/labels/<name>_labeller_{A,B}.csv``,
    sample ``validation/pattern_sample_<name>.csv``; every item test."""
    return {"a": Path(f"/work/labels/{name}_labeller_A.csv"), "b": Path(f"/work/labels/{name}_labeller_B.csv"),
            "sample": ROOT / "validation" / f"pattern_sample_{name}.csv",
            "out": ROOT / "validation" / f"pattern_labels_{name}.csv",
            "stem": f"labeller_agreement_{name}", "seed": seed, "test_fraction": 1.0}


# fresh test samples and their draw seeds: every item test, agreement by stratum
FRESH = {"v4": 2029, "v5": 2030, "v6": 2031}
SETS = {  # per labelled set: default inputs and outputs, split seed and test fraction
    "v2": {"a": Path("/work/labels/labeller_A.csv"), "b": Path("/work/labels/labeller_B.csv"),
           "sample": ROOT / "validation" / "pattern_sample_v2.csv",
           "out": ROOT / "validation" / "pattern_labels_v2.csv",
           "stem": "labeller_agreement", "seed": SPLIT_SEED, "test_fraction": TEST_FRACTION},
    "v3": {"a": ROOT / "validation" / "pattern_labels_v3_A.csv", "b": ROOT / "validation" / "pattern_labels_v3_B.csv",
           "sample": ROOT / "validation" / "block_sample_v3.csv", "out": ROOT / "validation" / "pattern_labels_v3.csv",
           "stem": "labeller_agreement_v3", "seed": 2027, "test_fraction": 0.5},
    **{name: fresh_set(name, seed) for name, seed in FRESH.items()},
}
TITLES = {"v2": "v2 sample", "v3": "v3 block sample", **{v: f"{v} test sample" for v in FRESH}}


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


def record_split(sample: list[dict[str, str]], seed: int = SPLIT_SEED,
                 test_fraction: float = TEST_FRACTION) -> dict[str, str]:
    """``item -> train|test``: seeded ``test_fraction`` of the records of each group to test (1.0: all of them,
    as for v4). Groups: records with a block candidate (``pool``), else random singles / pairs (v2, v4) or
    control pairs (v3)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    rec_group: dict[tuple[str, str], str] = {}
    for r in sample:
        key = (r["source"], r["line"])
        if r["stratum"] == "block_candidate":
            rec_group[key] = "pool"
        elif r["stratum"] == "control":
            rec_group.setdefault(key, "control")
        else:
            rec_group.setdefault(key, "single" if r["len_a"] == r["length"] else "pair")
    for key, g in rec_group.items():
        groups.setdefault(g, []).append(key)
    test: set[tuple[str, str]] = set()
    rng = np.random.default_rng(seed)
    for g in sorted(groups):
        keys = sorted(groups[g])
        order = rng.permutation(len(keys))
        test |= {keys[int(k)] for k in order[:round(test_fraction * len(keys))]}
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


def markdown(res: dict, title: str = "v2 sample") -> str:
    short = {"vertical": "vert", "diagonal": "diag", "vertical_diagonal": "v+d", "block": "block",
             "heterogeneous": "het"}
    out = [f"# Agreement of the two pattern labellers (MiniLM, {title})", "",
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
    if "counts" in res:
        sets = list(res["counts"])
        out += ["Consensus labels per set and split (disputed maps are left out of training and consensus scores):", "",
                "| consensus | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
        out += [f"| {lab} | " + " | ".join(str(res["counts"][s_].get(lab, 0)) for s_ in sets) + " |"
                for lab in (*LABELS, "disputed", "total")]
        out.append("")
    return "\n".join(out)


def label_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    """Consensus label counts of some rows of a labels CSV (``total`` included)."""
    out = {lab: sum(r["consensus"] == lab for r in rows) for lab in (*LABELS, "disputed")}
    out["total"] = len(rows)
    return out


def _shown(path: Path) -> str:
    """A path as recorded in the results: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=sorted(SETS), default="v2", help="labelled set (default paths below)")
    ap.add_argument("--a", type=Path, default=None, help="labeller A's CSV (v2: /work/labels/labeller_A.csv)")
    ap.add_argument("--b", type=Path, default=None, help="labeller B's CSV")
    ap.add_argument("--sample", type=Path, default=None, help="the sample CSV (v2: validation/pattern_sample_v2.csv)")
    ap.add_argument("--out", type=Path, default=None, help="labels CSV written (v2: validation/pattern_labels_v2.csv)")
    ap.add_argument("--results", type=Path, default=ROOT / "pattern_classifier" / "results")
    args = ap.parse_args(argv)
    cfg = SETS[args.set]
    for key in ("a", "b", "sample", "out"):
        if getattr(args, key) is None:
            setattr(args, key, cfg[key])
    sample = list(csv.DictReader(args.sample.open(encoding="utf-8")))
    items = {r["item"] for r in sample}
    la, lb = read_labeller(args.a, items), read_labeller(args.b, items)
    split = record_split(sample, cfg["seed"], cfg["test_fraction"])
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
        "block candidates": lambda r: meta[r["item"]]["stratum"] == "block_candidate",
        "controls (random pair maps)": lambda r: meta[r["item"]]["stratum"] == "control",
        "random sample (representative)": lambda r: meta[r["item"]]["stratum"] == "random",
        "block-candidate pool": lambda r: meta[r["item"]]["stratum"] == "block_candidate",
        "single sentences": lambda r: meta[r["item"]]["len_a"] == meta[r["item"]]["length"],
        "sentence pairs": lambda r: meta[r["item"]]["len_a"] != meta[r["item"]]["length"],
        "both labellers high": lambda r: r["confidence_a"] == r["confidence_b"] == "high",
        "held-out test split": lambda r: r["split"] == "test",
    }
    if args.set == "v2":  # the v2 table keeps its subsets
        for name in ("block candidates", "controls (random pair maps)"):
            del subsets[name]
    elif args.set in FRESH:  # all items are test: strata and kinds of record instead
        for name in ("controls (random pair maps)", "block-candidate pool", "held-out test split"):
            del subsets[name]
    else:
        for name in ("random sample (representative)", "block-candidate pool", "single sentences", "sentence pairs"):
            del subsets[name]
    res = {"set": args.set, "labeller_a": _shown(args.a), "labeller_b": _shown(args.b), "sample": _shown(args.sample),
           "split_seed": cfg["seed"], "test_fraction": cfg["test_fraction"],
           "subsets": {name: agreement([r["label_a"] for r in rows if f(r)], [r["label_b"] for r in rows if f(r)])
                       for name, f in subsets.items()},
           "consensus": {"confidence": {c: sum(r["confidence"] == c for r in rows)
                                        for c in ("high", "resolved", "disputed")},
                         "labels": {lab: sum(r["consensus"] == lab for r in rows) for lab in (*LABELS, "disputed")}},
           "confidence_marks": {"A_low": sum(v[1] == "low" for v in la.values()),
                                "B_low": sum(v[1] == "low" for v in lb.values())}}
    if args.set == "v3":  # v2 and v3 together: counts per set and split, and the pooled agreement
        v2 = list(csv.DictReader(SETS["v2"]["out"].open(encoding="utf-8")))
        res["counts"] = {"v3": label_counts(rows), "v3 train": label_counts([r for r in rows if r["split"] == "train"]),
                         "v3 test": label_counts([r for r in rows if r["split"] == "test"]), "v2": label_counts(v2),
                         "v2 + v3": label_counts(v2 + rows),
                         "v2 + v3 train": label_counts([r for r in v2 + rows if r["split"] == "train"]),
                         "v2 + v3 test": label_counts([r for r in v2 + rows if r["split"] == "test"])}
        both = v2 + rows
        res["subsets"]["v2 + v3 pooled"] = agreement([r["label_a"] for r in both], [r["label_b"] for r in both])
        res["records"] = {s_: len({(meta[r["item"]]["source"], meta[r["item"]]["line"]) for r in rows
                                   if r["split"] == s_}) for s_ in ("train", "test")}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{cfg['stem']}.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res, TITLES[args.set])
    (args.results / f"{cfg['stem']}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
