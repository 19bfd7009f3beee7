"""Is the pattern classifier within the labellers' own agreement on a fresh test sample (v4, v5, v6)? (issue 10)

``train_patterns.py --data v4`` (``--data v5``, ``--data v6``) scored the packaged model once; this script adds no
choice and no tuning, only the statistics that compare the model with a second human on the same maps:

* Cohen's kappa and macro-F1 of the model against labeller A, against B and against the consensus, next to B
  against A (the labellers' own agreement);
* the model as a *second rater*: for each labeller X, score(model vs X) - score(other labeller vs X) on the same
  maps, with a 95 % bootstrap interval over records (2,000 resamples; a record's maps move together);
* per type, F1 against the consensus next to the labellers' specific agreement (2 x both / (A + B)).

Writes ``pattern_classifier/results/patterns_<set>_vs_humans.{json,md}`` (``--set v4``, the default, ``v5`` or
``v6``). Usage::

    python pattern_classifier/patterns_vs_humans.py --workdir W --model-json V6.json  # v4 (made with model version 6)
    python pattern_classifier/patterns_vs_humans.py --set v5 --workdir W              # v5 (the packaged version 7)
    python pattern_classifier/patterns_vs_humans.py --set v6 --workdir W              # v6 (version 7 again)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import train_patterns as tp  # noqa: E402

from attnx.kernels.patterns import PATTERNS  # noqa: E402


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(a, b, labels=list(range(len(PATTERNS)))))


def macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    return tp.scores(gold, pred)["macro_f1"]


def specific_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    out = {}
    for c, name in enumerate(PATTERNS):
        na, nb, both = int((a == c).sum()), int((b == c).sum()), int(((a == c) & (b == c)).sum())
        out[name] = 2 * both / (na + nb) if na + nb else float("nan")
    return out


def second_rater(records: np.ndarray, x: np.ndarray, human: np.ndarray, model: np.ndarray, n_boot: int = 2000,
                 seed: int = 2029) -> dict:
    """score(model vs x) - score(human vs x) for macro-F1 and kappa, with record-bootstrap 95 % intervals."""
    def diff(idx: np.ndarray) -> tuple[float, float]:
        return (macro_f1(x[idx], model[idx]) - macro_f1(x[idx], human[idx]),
                kappa(x[idx], model[idx]) - kappa(x[idx], human[idx]))

    uniq = np.unique(records)
    rows = {r: np.flatnonzero(records == r) for r in uniq}
    rng = np.random.default_rng(seed)
    boot = np.array([diff(np.concatenate([rows[r] for r in rng.choice(uniq, len(uniq))])) for _ in range(n_boot)])
    point = diff(np.arange(len(x)))
    return {"macro_f1_diff": point[0], "macro_f1_ci95": np.percentile(boot[:, 0], [2.5, 97.5]).tolist(),
            "kappa_diff": point[1], "kappa_ci95": np.percentile(boot[:, 1], [2.5, 97.5]).tolist(), "n_boot": n_boot}


def main(argv: list[str] | None = None) -> None:
    from attnx.kernels.pattern_model import PatternModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/attnx_train_patterns"))
    ap.add_argument("--set", choices=sorted(tp.FRESH), default="v4", help="the fresh test sample (default v4)")
    ap.add_argument("--labels", type=Path, default=None,
                    help="its labels CSV (default: validation/pattern_labels_<set>.csv, "
                         "by pattern_classifier/consensus_labels.py)")
    ap.add_argument("--model-json", type=Path, default=None,
                    help="the model compared (default: the packaged one; v4's file was made with version 6)")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)

    pm = PatternModel.load(args.model_json)
    trained = pm.info.get("training", {}).get("data")
    if args.set in tp.TRAINING.get(trained, ()):
        raise SystemExit(f"{pm.source}: version {pm.info.get('version')} was trained on {args.set} (data {trained}); "
                         "compare a model that never saw it (--model-json)")
    d = tp.load_items(tp.FRESH[args.set]["set"], args.workdir, fresh_labels={args.set: args.labels})
    a, b, cons = d["y_A"], d["y_B"], d["y_consensus"]
    pred = pm.proba(d["x"]).argmax(axis=1)
    usable = cons >= 0
    result: dict = {"set": args.set, "model_version": pm.info.get("version"), "model_digest": pm.digest, "maps": len(a),
                    "not_disputed": int(usable.sum()), "strata": {}}
    for stratum in ("all", "random", "block_candidate"):
        sel = np.ones(len(a), bool) if stratum == "all" else d["stratum"] == stratum
        su = sel & usable
        r = {
            "maps": int(sel.sum()),
            "kappa": {"model_vs_A": kappa(a[sel], pred[sel]), "model_vs_B": kappa(b[sel], pred[sel]),
                      "B_vs_A": kappa(a[sel], b[sel]), "model_vs_consensus": kappa(cons[su], pred[su])},
            "macro_f1": {"model_vs_A": macro_f1(a[sel], pred[sel]), "model_vs_B": macro_f1(b[sel], pred[sel]),
                         "B_vs_A": macro_f1(a[sel], b[sel]), "model_vs_consensus": macro_f1(cons[su], pred[su])},
            "second_rater_vs_A": second_rater(d["record"][sel], a[sel], b[sel], pred[sel]),
            "second_rater_vs_B": second_rater(d["record"][sel], b[sel], a[sel], pred[sel]),
            "per_type": {"model_f1_vs_consensus": {k: v["f1"] for k, v in tp.scores(cons[su], pred[su])["per_class"]
                                                   .items()},
                         "labellers_specific_agreement": specific_agreement(a[sel], b[sel])},
        }
        result["strata"][stratum] = r
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"patterns_{args.set}_vs_humans"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    md = [f"# Pattern model version {result['model_version']} as a second rater on the {args.set} test sample", "",
          "| maps | kappa model-A | kappa model-B | kappa B-A | macro-F1 model-A | model-B | B-A | "
          "model - B, vs A: macro-F1 [95%] | model - A, vs B: macro-F1 [95%] |",
          "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for stratum, r in result["strata"].items():
        k, f = r["kappa"], r["macro_f1"]
        sa, sb = r["second_rater_vs_A"], r["second_rater_vs_B"]
        md.append(f"| {stratum} ({r['maps']}) | {k['model_vs_A']:.3f} | {k['model_vs_B']:.3f} | {k['B_vs_A']:.3f} | "
                  f"{f['model_vs_A']:.3f} | {f['model_vs_B']:.3f} | {f['B_vs_A']:.3f} | "
                  f"{sa['macro_f1_diff']:+.3f} [{sa['macro_f1_ci95'][0]:+.3f}, {sa['macro_f1_ci95'][1]:+.3f}] | "
                  f"{sb['macro_f1_diff']:+.3f} [{sb['macro_f1_ci95'][0]:+.3f}, {sb['macro_f1_ci95'][1]:+.3f}] |")
    r = result["strata"]["all"]["per_type"]
    md += ["", "| type | model F1 vs consensus | labellers' specific agreement |", "|---|---:|---:|"]
    md += [f"| {t} | {r['model_f1_vs_consensus'][t]:.3f} | {r['labellers_specific_agreement'][t]:.3f} |"
           for t in PATTERNS]
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
