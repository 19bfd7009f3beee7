"""Train the learned pattern classifier on one split of the labelled maps and evaluate it on the other.

Longer than most files on purpose: data loading, cross-validation, the held-out look and the report are one
experiment, and reading it top to bottom is how its protocol (CV on train only, one held-out look) is checked.

Data (``validation/``, no text: pointers into the shared data folder):

* ``v2``: ``pattern_sample_v2.csv`` (1008 MiniLM maps, drawn by ``pattern_classifier/render_label_maps.py --v2``) with
  ``pattern_labels_v2.csv`` (labeller A, labeller B, consensus + confidence, ``split``: by record);
* ``v3``: v2 plus the block sample ``block_sample_v3.csv`` (360 QNLI/RTE pair maps, 300 block
  candidates + 60 controls, drawn by ``pattern_classifier/block_candidates.py``) with ``pattern_labels_v3.csv`` (same
  columns; its own by-record split, half of the records to ``test``); v2's split is kept as it is;
* ``v1``: ``pattern_labels.csv`` (240 maps, one labeller, ``tune``/``test`` by item);
* ``all`` (the default): v2 + v3, both splits, all for training: the old held-out split is spent (scored six
  times), so the model is chosen by CV over every labelled map and refitted on all of them (no held-out report);
* ``v4``: no training choice at all: the packaged model (``--model-json``) is scored once on the fresh test sample
  ``pattern_sample_v4.csv`` with ``pattern_labels_v4.csv`` (``pattern_classifier/consensus_labels.py --set v4``; every
  item ``test``), overall, per stratum (random / block_candidate) and against each labeller, after checking that its
  recorded candidate refitted on the ``all`` training maps gives its weights. Writes ``patterns_v4.{json,md}`` and
  refuses to run again once ``patterns_v4.json`` exists in ``--out`` (``--again`` overrides);
* ``all4``: v2 + v3 + v4 (v4's one look is spent: its labels are training data now), all for training; version 7,
  results ``patterns_cv_v7.json`` and ``patterns_learned_v7.{json,md}``;
* ``v5``: as ``v4`` for the second fresh sample ``pattern_sample_v5.csv`` with ``pattern_labels_v5.csv``, the refit
  check on the ``all4`` training maps; writes ``patterns_v5.{json,md}`` and refuses a second run the same way;
* ``v6``: as ``v5`` (the same packaged version 7) for the third fresh sample ``pattern_sample_v6.csv``.

The maps are re-extracted with the real MiniLM model into ``--workdir`` (reused), their features are
computed by the production path (:func:`attnx.analysis.driver.block_maps` -> ``per_map_means`` ->
:func:`attnx.kernels.pattern_model.design_matrix`), and:

1. model choice by 5 x 5-fold cross-validation grouped by record on the *training* split only: multinomial
   logistic regression (several C, balanced or not), gradient-boosted trees, a random forest, and a small
   CNN on maps resized to 32 x 32 (Kovaleva et al. 2019 trained a CNN on ~400 labelled maps);
2. the chosen logistic model is refitted on the whole training split and (``--write``) written to
   ``src/attnx/data/pattern_model.json``;
3. held-out report: per-type precision / recall / F1, macro-F1, accuracy, confusion, calibration
   (10-bin reliability table, expected calibration error, Brier score), the uncertain share and the
   accuracy on certain / uncertain maps; F1 against labeller A and against labeller B separately, and the
   labellers' own agreement on the same items; the hand-set rules (``Thresholds``) on the same items.

Writes ``pattern_classifier/results/patterns_learned.{json,md}`` (``--data all``: ``patterns_learned_v6.{json,md}`` and
``patterns_cv_v6.json``; ``--data all4``: ``..._v7``; so earlier versions' files stay as they are). Usage::

    python pattern_classifier/train_patterns.py --data all4 --no-cnn --repeats 10 --write  # the shipped model (v7)
    python pattern_classifier/train_patterns.py --data v5      # the one look at the v5 test sample (packaged model)
    python pattern_classifier/train_patterns.py --data all --no-cnn --repeats 10 --write   # version 6
    python pattern_classifier/train_patterns.py --data v4 --model-json V6.json  # v4's one look (made with version 6)
    python pattern_classifier/train_patterns.py --data v3 --write          # version 5 (v2 + v3 train split)
    python pattern_classifier/train_patterns.py --data v1 --no-cnn         # on the 240 old labels only
    python pattern_classifier/train_patterns.py --cv-only --only logreg --repeats 10   # model work: never scores test

Use ``--cv-only`` while developing: it writes ``patterns_cv.json`` (a full run writes it too, before the
held-out look) and stops before the held-out split is touched (each full run scores it; the split's history
is kept in ``validation/README.md``). The CV table includes the v3 model's configuration on its 19 features
(the first 19 of :data:`DESIGN`) for comparison. With ``--data v3`` the held-out report is given for the
whole test split and separately for its v3 part (fresh maps, not scored before) and its v2 part.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pattern_classifier"))
import render_label_maps as tool  # noqa: E402

from attnx.kernels.pattern_model import DESIGN  # noqa: E402
from attnx.kernels.patterns import PATTERNS  # noqa: E402

RESULTS = ROOT / "pattern_classifier" / "results"
MODEL_OUT = ROOT / "src" / "attnx" / "data" / "pattern_model.json"
SEED = 2026
CNN_SIZE = 32
UNCERTAIN_BELOW = 0.6


# ----------------------------------------------------------------------------------------------------------
# Data: labelled items -> design features (production path), raw maps (for the CNN), labels, groups
# ----------------------------------------------------------------------------------------------------------
def store_design(store_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Design features ``(N, L, H, D)``, the rules' codes ``(N, L, H)``, the per-map feature means
    ``(N, L, H, NF)`` (:func:`attnx.kernels.features.per_map_means`) and per record ``(N, 3)`` its length,
    segment-A length and stripe-column count (the other arguments of ``design_matrix``) of every map of a store."""
    import attnx
    from attnx.analysis.driver import block_maps, record_shape_info
    from attnx.kernels.features import NF, per_map_means
    from attnx.kernels.pattern_model import design_matrix
    from attnx.kernels.patterns import Thresholds, classify_maps

    st = attnx.open_store(store_path)
    L, H = st.n_layers, st.n_heads
    x = np.zeros((len(st), L, H, len(DESIGN)))
    rules = np.zeros((len(st), L, H), np.int8)
    means_all = np.zeros((len(st), L, H, NF))
    shape_info = np.zeros((len(st), 3))
    for b in st.blocks():
        sums = block_maps(b, L, H)
        la, ns = record_shape_info(b)
        shp = (-1, 1, 1)
        ids = np.asarray(b.record_ids)
        means = per_map_means(sums, b.lengths)
        means_all[ids] = means
        shape_info[ids] = np.stack([b.lengths, la, ns], axis=1)
        x[ids] = design_matrix(means, b.lengths.reshape(shp), la.reshape(shp), ns.reshape(shp))
        rules[ids] = classify_maps(means, b.lengths.reshape(shp), la.reshape(shp), ns.reshape(shp), Thresholds.load())
    return x, rules, means_all, shape_info


def resized(attn: np.ndarray, len_a: int, size: int = CNN_SIZE) -> np.ndarray:
    """A map ``(l, l)`` -> ``(2, size, size)`` float32: the map scaled to max 1 and its same-segment mask,
    resized by area averaging (nearest-neighbour upsampling first when ``l < size``)."""
    import torch
    import torch.nn.functional as tf

    l = attn.shape[0]
    seg = np.arange(l) >= len_a
    same = (seg[:, None] == seg[None, :]).astype(np.float32)
    t = torch.from_numpy(np.stack([attn / max(float(attn.max()), 1e-9), same]).astype(np.float32))[None]
    if l < size:
        t = tf.interpolate(t, size=(size * ((size + l - 1) // l),) * 2, mode="nearest")
    return tf.adaptive_avg_pool2d(t, size)[0].numpy()


V3_RECORD_OFFSET = 100_000  # v3 record ids follow v2's (groups of the grouped CV stay distinct)


def records_from_sample(rows: list[dict[str, str]]) -> list[tool.SourceRecord]:
    """The distinct ``(source, line)`` records of a sample CSV (first appearance order) with their texts from
    the shared data folder; the wordpiece count is re-measured and checked against the CSV's ``length``."""
    tok = tool._tokenizer()
    texts: dict[str, dict[int, tuple[str, str | None]]] = {}
    out: list[tool.SourceRecord] = []
    seen: set[tuple[str, int]] = set()
    for r in rows:
        src, line = r["source"], int(r["line"])
        if (src, line) in seen:
            continue
        seen.add((src, line))
        if src not in texts:
            texts[src] = {ln: (a, b) for ln, a, b in tool._v2_candidates(src)}
        if line not in texts[src]:
            raise SystemExit(f"{src}:{line}: no such record (item {r['item']})")
        a, b = texts[src][line]
        n_tok = len(tok(a, b)["input_ids"] if b is not None else tok(a)["input_ids"])  # type: ignore[operator]
        if n_tok != int(r["length"]):
            raise SystemExit(f"{src}:{line}: {n_tok} wordpieces, the sample says {r['length']} (item {r['item']})")
        out.append(tool.SourceRecord(src, line, a, b, n_tok))
    return out


def _concat(a: dict, b: dict) -> dict:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


SAMPLED = {  # labelled sets drawn as a sample CSV + a labels CSV (columns of pattern_labels_v3.csv)
    "v3-blocks": ("block_sample_v3.csv", "pattern_labels_v3.csv", "v3_blocks", "v3"),
    "v4-test": ("pattern_sample_v4.csv", "pattern_labels_v4.csv", "v4", "v4"),
    "v5-test": ("pattern_sample_v5.csv", "pattern_labels_v5.csv", "v5", "v5"),
    "v6-test": ("pattern_sample_v6.csv", "pattern_labels_v6.csv", "v6", "v6"),
}
V4_RECORD_OFFSET = 200_000  # v4 record ids follow v3's
# fresh test samples, each scored once by the frozen model (``--data v4`` / ``v5`` / ``v6``): its labelled set, record
# id offset, and the training data (``--data``) of the model it scores (for the refit check)
FRESH = {"v4": {"set": "v4-test", "offset": V4_RECORD_OFFSET, "train": "all"},
         "v5": {"set": "v5-test", "offset": 300_000, "train": "all4"},
         "v6": {"set": "v6-test", "offset": 400_000, "train": "all4"}}
TRAINING = {"all": ("v3",), "all4": ("v3", "v4")}  # training-only data: v2 + v3 (+ v4), every split
STEM = {"all": "_v6", "all4": "_v7"}  # result-file suffix per training-only data (earlier versions' files stay)
VERSION = {"all4": 7, "all": 6, "v3": 5}  # packaged model version written per --data (else 4)
# the backend each set's maps are extracted with: versions 5-7 were trained on v2 and v3 stores made with torch
# (before --backend auto chose onnx on CPU) and on a v4 store made with onnx; the two backends' maps differ in the
# last bits, which moves a refit's weights by up to 0.024, so the refit check of --data v4/v5/v6 reproduces the
# packaged weights only with these (v5 and v6 were scored on onnx stores)
BACKEND = {"v2": "torch", "v3-blocks": "torch", "v4-test": "onnx", "v5-test": "onnx", "v6-test": "onnx"}


def _two_labeller_rows(rows: list[dict[str, str]], srows: dict[str, dict[str, str]],
                       index: dict[tuple[str, int], int]) -> tuple[list, dict[str, list[str]], list, list, list]:
    """A two-labeller labels file's rows (with their sample rows ``srows`` and record ``index``) as
    ``(items, labels by who, confidence, split, stratum)``."""
    items = []
    for r in rows:
        s = srows[r["item"]]
        items.append(tool.Item(r["item"], index[(s["source"], int(s["line"]))], int(s["layer"]), int(s["head"])))
    lab = {"consensus": [r["consensus"] for r in rows], "A": [r["label_a"] for r in rows],
           "B": [r["label_b"] for r in rows]}
    return (items, lab, [r["confidence"] for r in rows], [r["split"] for r in rows],
            [srows[r["item"]]["stratum"] for r in rows])


def load_items(data: str, workdir: Path, labels_v2: Path | None = None,
               fresh_labels: dict[str, Path | None] | None = None) -> dict:
    """Items of a labelled set with features and labels: a dict of equally long arrays + metadata
    (``set``: which labelled set an item comes from; ``stratum``: how its map was drawn).

    ``all``: v2 + v3, every non-disputed map for training (``split`` = ``train``: the old held-out split is spent);
    ``all4``: ``all`` plus the v4 sample (its one look is spent), all ``train``;
    ``v4`` / ``v5`` / ``v6``: the model's training data (:data:`FRESH`) plus that fresh test sample (``split`` =
    ``test``). ``fresh_labels``: a fresh sample's labels CSV by its tag (``{"v5": path}``; default
    ``validation/pattern_labels_<tag>.csv``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    fresh_labels = fresh_labels or {}
    if data in TRAINING or data in FRESH:
        parts = TRAINING[FRESH[data]["train"]] if data in FRESH else TRAINING[data]
        d = load_items(parts[0], workdir, labels_v2)
        for extra in parts[1:]:  # an earlier fresh sample, now training data
            e = load_items(FRESH[extra]["set"], workdir, fresh_labels=fresh_labels)
            e["record"] = e["record"] + FRESH[extra]["offset"]
            d = _concat(d, e)
        d["split"] = np.full(len(d["item"]), "train")
        if data in FRESH:
            name = FRESH[data]["set"]
            t = load_items(name, workdir, fresh_labels=fresh_labels)
            t["record"] = t["record"] + FRESH[data]["offset"]
            if (t["split"] != "test").any():
                path = fresh_labels.get(data) or SAMPLED[name][1]
                raise SystemExit(f"{path}: every {data} item must be split = test")
            d = _concat(d, t)
        return d
    if data == "v3":
        v2, v3 = load_items("v2", workdir, labels_v2), load_items("v3-blocks", workdir)
        v3["record"] = v3["record"] + V3_RECORD_OFFSET
        return _concat(v2, v3)
    if data in SAMPLED:
        sample_csv, labels_csv, sub, _ = SAMPLED[data]
        srows_l = list(csv.DictReader(open(ROOT / "validation" / sample_csv, encoding="utf-8")))
        records = records_from_sample(srows_l)
        store = tool.extract_sample(tool.Sample(records, []), workdir / sub, backend=BACKEND.get(data, "auto"))
        index = {(r.source, r.line): k for k, r in enumerate(records)}
        srows = {r["item"]: r for r in srows_l}
        given = fresh_labels.get(SAMPLED[data][3])
        path = given if given is not None else ROOT / "validation" / labels_csv
        if not path.exists():
            raise SystemExit(f"{path}: no such labels file (make it with pattern_classifier/consensus_labels.py)")
        rows = list(csv.DictReader(open(path, encoding="utf-8")))
        if {r["item"] for r in rows} != set(srows):
            raise SystemExit(f"{path}: its items differ from validation/{sample_csv}")
        items, lab, conf, split, stratum = _two_labeller_rows(rows, srows, index)
        maps = tool.item_maps(tool.Sample(records, items), store)
    elif data == "v1":
        sample = tool.build_sample()
        store = tool.extract_sample(sample, workdir / "v1")
        rows = list(csv.DictReader(open(ROOT / "validation" / "pattern_labels.csv", encoding="utf-8")))
        by = {it.item: it for it in sample.items}
        items = [by[r["item"]] for r in rows]
        lab = {"consensus": [r["label"] for r in rows]}
        conf = ["high"] * len(rows)
        split = ["train" if r["split"] == "tune" else "test" for r in rows]
        stratum = ["random"] * len(rows)
        maps = tool.item_maps(sample, store)
    else:
        records, n_random = tool.build_records_v2()
        store = tool.extract_sample(tool.Sample(records, []), workdir / "v2", backend=BACKEND["v2"])
        index = {(r.source, r.line): k for k, r in enumerate(records)}
        srows = {r["item"]: r for r in csv.DictReader(open(ROOT / "validation" / "pattern_sample_v2.csv",
                                                              encoding="utf-8"))}
        path = labels_v2 or ROOT / "validation" / "pattern_labels_v2.csv"
        rows = list(csv.DictReader(open(path, encoding="utf-8")))
        items, lab, conf, split, stratum = _two_labeller_rows(rows, srows, index)
        maps = tool.item_maps(tool.Sample(records, items), store)
    x, rules, means, shape_info = store_design(store)
    out = {
        "item": np.array([it.item for it in items]),
        "record": np.array([it.record for it in items]),
        "layer": np.array([it.layer for it in items]),
        "x": np.stack([x[it.record, it.layer, it.head] for it in items]),
        "means": np.stack([means[it.record, it.layer, it.head] for it in items]),
        "shape_info": np.stack([shape_info[it.record] for it in items]),
        "rules": np.array([rules[it.record, it.layer, it.head] for it in items]),
        "img": np.stack([resized(*maps[it.item]) for it in items]),
        "confidence": np.array(conf),
        "split": np.array(split),
        "stratum": np.array(stratum),
        "set": np.array([SAMPLED[data][3] if data in SAMPLED else data] * len(items)),
    }
    for who, labels in lab.items():
        out[f"y_{who}"] = np.array([PATTERNS.index(v) if v in PATTERNS else -1 for v in labels])
    return out


# ----------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------
def scores(gold: np.ndarray, pred: np.ndarray) -> dict:
    """Per-type P/R/F1/support, macro-F1 (over types present in gold or predictions), accuracy, confusion."""
    k = len(PATTERNS)
    cm = np.zeros((k, k), np.int64)
    for g, p in zip(gold, pred, strict=True):
        cm[g, p] += 1
    per, f1s = {}, []
    for c, name in enumerate(PATTERNS):
        tp, npred, ngold = int(cm[c, c]), int(cm[:, c].sum()), int(cm[c].sum())
        prec = tp / npred if npred else 0.0
        rec = tp / ngold if ngold else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[name] = {"precision": prec, "recall": rec, "f1": f1, "support": ngold, "predicted": npred}
        if ngold or npred:
            f1s.append(f1)
    n = int(cm.sum())
    return {"n": n, "accuracy": float(np.trace(cm) / n) if n else 0.0, "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "per_class": per, "confusion": cm.tolist()}


def calibration(gold: np.ndarray, proba: np.ndarray, bins: int = 10) -> dict:
    """Reliability of the winning probability: per bin (count, mean confidence, accuracy), ECE, Brier."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == gold
    edges = np.linspace(0, 1, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            table.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": int(sel.sum()), "confidence": float(conf[sel].mean()),
                          "accuracy": float(correct[sel].mean())})
            ece += sel.mean() * abs(conf[sel].mean() - correct[sel].mean())
    onehot = np.eye(proba.shape[1])[gold]
    unc = conf < UNCERTAIN_BELOW
    return {"ece": float(ece), "brier": float(((proba - onehot) ** 2).sum(axis=1).mean()), "table": table,
            "uncertain_below": UNCERTAIN_BELOW, "uncertain_share": float(unc.mean()),
            "accuracy_certain": float(correct[~unc].mean()) if (~unc).any() else None,
            "accuracy_uncertain": float(correct[unc].mean()) if unc.any() else None}


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------
NEW_DESIGN = ("diag_best", "diag_vis", "map_max")  # added after the v3 model (19 features); last in DESIGN


class _Columns:
    """A pipeline step keeping the first ``n`` design columns (the v3 model's features, for comparison)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> _Columns:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x[:, :self.n]

    def get_params(self, deep: bool = True) -> dict:
        return {"n": self.n}

    def set_params(self, **params: int) -> _Columns:
        self.n = params.get("n", self.n)
        return self


def candidates() -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for c in (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0):
        for cw in (None, "balanced"):
            out[f"logreg C={c}{' balanced' if cw else ''}"] = make_pipeline(
                StandardScaler(), LogisticRegression(C=c, max_iter=10000, class_weight=cw))
    base = len(DESIGN) - len(NEW_DESIGN)
    out[f"logreg C=30.0 balanced, v3 features ({base})"] = make_pipeline(
        _Columns(base), StandardScaler(), LogisticRegression(C=30.0, max_iter=10000, class_weight="balanced"))
    out["gbt depth=3"] = HistGradientBoostingClassifier(max_depth=3, max_iter=150, learning_rate=0.1,
                                                        min_samples_leaf=5, random_state=0)
    out["gbt depth=3 balanced"] = HistGradientBoostingClassifier(max_depth=3, max_iter=150, learning_rate=0.1,
                                                                 min_samples_leaf=5, class_weight="balanced",
                                                                 random_state=0)
    out["random forest"] = RandomForestClassifier(300, min_samples_leaf=2, random_state=0)
    return out


class SmallCNN:
    """Two conv layers + a linear head on ``(2, 32, 32)`` resized maps; sklearn-like fit / predict_proba."""

    def __init__(self, epochs: int = 25, seed: int = 0) -> None:
        self.epochs, self.seed = epochs, seed

    def fit(self, img: np.ndarray, y: np.ndarray) -> SmallCNN:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        self.net = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (8, 16, 16)
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (16, 8, 8)
            nn.Flatten(), nn.Linear(16 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, len(PATTERNS)))
        opt = torch.optim.Adam(self.net.parameters(), lr=3e-3, weight_decay=1e-4)
        xt, yt = torch.from_numpy(img), torch.from_numpy(y.astype(np.int64))
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            for idx in torch.randperm(len(xt), generator=g).split(32):
                opt.zero_grad()
                nn.functional.cross_entropy(self.net(xt[idx]), yt[idx]).backward()
                opt.step()
        return self

    def predict_proba(self, img: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return torch.softmax(self.net(torch.from_numpy(img)), dim=1).numpy()


def _proba_full(model, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """predict_proba with a column for every type, also those absent from the training fold."""
    p = model.predict_proba(x)
    classes = getattr(model, "classes_", None)
    if classes is None:
        return p
    out = np.zeros((len(x), len(PATTERNS)))
    out[:, classes] = p
    return out


def cross_validate(d: dict, train: np.ndarray, use_cnn: bool, folds: int = 5, repeats: int = 5,
                   cnn_folds: int = 3, only: str | None = None) -> list[dict]:
    """Macro-F1 / accuracy of every candidate on the training split only: ``repeats`` x ``folds``-fold CV
    grouped by record (shuffled groups, seeds 0..repeats-1), scores of each repeat's pooled out-of-fold
    predictions, mean and standard deviation over repeats. With 7 training blocks one repeat is too noisy
    to choose between neighbouring candidates. The CNN (far slower to train here) runs one repeat on
    ``cnn_folds`` of the folds."""
    import warnings

    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    x, y, g, img = d["x"][train], d["y_consensus"][train], d["record"][train], d["img"][train]
    splits = [list(GroupKFold(folds, shuffle=True, random_state=rep).split(x, y, g)) for rep in range(repeats)]
    rows = []
    cands = {k: v for k, v in candidates().items() if only is None or re.search(only, k)}
    if use_cnn:
        cands["cnn 32x32"] = None
    for name, model in cands.items():
        t0 = time.perf_counter()
        per_rep = []
        for cv in (splits[:1] if model is None else splits):
            pred = np.zeros(len(y), np.int64)
            seen = np.zeros(len(y), bool)
            for tr, te in (cv[:cnn_folds] if model is None else cv):
                seen[te] = True
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if model is None:
                        m = SmallCNN().fit(img[tr], y[tr])
                        pred[te] = m.predict_proba(img[te]).argmax(axis=1)
                    else:
                        m = clone(model).fit(x[tr], y[tr])
                        pred[te] = _proba_full(m, x[te]).argmax(axis=1)
            per_rep.append(scores(y[seen], pred[seen]))
        f1 = {k: float(np.mean([s["per_class"][k]["f1"] for s in per_rep])) for k in PATTERNS}
        macro = [s["macro_f1"] for s in per_rep]
        rows.append({"model": name, "folds": cnn_folds if model is None else folds, "repeats": len(per_rep),
                     "macro_f1": float(np.mean(macro)), "macro_f1_sd": float(np.std(macro)),
                     "macro_f1_runs": [round(v, 4) for v in macro],
                     "accuracy": float(np.mean([s["accuracy"] for s in per_rep])),
                     "min_f1": min(f1.values()), "f1": {k: round(v, 3) for k, v in f1.items()},
                     "seconds": time.perf_counter() - t0})
        print(f"  cv {name:28s} macro-F1 {np.mean(macro):.3f} +- {np.std(macro):.3f}", flush=True)
    return rows


def to_json(pipe, info: dict, x_train: np.ndarray) -> dict:  # noqa: ANN001
    """A fitted StandardScaler + LogisticRegression pipeline as the packaged model JSON (with the training
    range of every feature, to which inputs are clipped)."""
    scaler, lr = pipe[0], pipe[-1]
    coef = np.zeros((len(PATTERNS), len(DESIGN)))
    icpt = np.full(len(PATTERNS), -30.0)  # a type absent from training gets ~0 probability
    coef[lr.classes_] = lr.coef_
    icpt[lr.classes_] = lr.intercept_
    return {
        "_doc": "Learned attention-pattern classifier of attnx.kernels.pattern_model (multinomial logistic "
                "regression on standardised design features). Written by pattern_classifier/train_patterns.py; "
                "see validation/README.md for the labels and pattern_classifier/results/patterns_learned.md for "
                "scores.",
        "version": VERSION.get(info.get("data"), 4), "kind": "softmax", "classes": list(PATTERNS),
        "features": list(DESIGN),
        "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "coef": coef.tolist(),
        "intercept": icpt.tolist(), "lo": x_train.min(axis=0).tolist(), "hi": x_train.max(axis=0).tolist(),
        "uncertain_below": UNCERTAIN_BELOW, "training": info,
    }


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------
SHORT = {"vertical": "vert", "diagonal": "diag", "vertical_diagonal": "v+d", "block": "block", "heterogeneous": "het"}


def md_scores(title: str, s: dict) -> list[str]:
    out = [f"#### {title} (n = {s['n']})", "", f"macro-F1 **{s['macro_f1']:.3f}**, accuracy {s['accuracy']:.3f}", "",
           "| type | support | predicted | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|"]
    for name in PATTERNS:
        c = s["per_class"][name]
        out.append(f"| {name} | {c['support']} | {c['predicted']} | {c['precision']:.3f} | {c['recall']:.3f} | "
                   f"{c['f1']:.3f} |")
    out += ["", "| gold \\ predicted | " + " | ".join(SHORT[n] for n in PATTERNS) + " |", "|---|" + "---:|" * 5]
    out += [f"| {n} | " + " | ".join(str(v) for v in row) + " |" for n, row in zip(PATTERNS, s["confusion"],
                                                                                  strict=True)]
    return [*out, ""]


def _load() -> list[float]:
    """1-, 5- and 15-minute load averages (recorded with every timing)."""
    import os

    return [round(v, 2) for v in os.getloadavg()]


def held_out_report(d: dict, sel: np.ndarray, pm) -> dict:  # noqa: ANN001
    """Scores of the packaged-path model ``pm`` on the items ``sel`` (bool over all items, disputed included):
    vs the consensus (disputed left out), the rules, calibration, consensus confidence ``high`` / ``resolved``
    only, and vs labeller A / B next to B vs A on all of ``sel``."""
    usable = sel & (d["y_consensus"] >= 0)
    proba = pm.proba(d["x"][usable])
    pred = proba.argmax(axis=1)
    gold = d["y_consensus"][usable]
    out = {"consensus": scores(gold, pred), "rules_consensus": scores(gold, d["rules"][usable].astype(int)),
           "calibration": calibration(gold, proba)}
    conf = d["confidence"][usable]
    for c in ("high", "resolved"):
        if (conf == c).any():
            out[f"consensus_{c}"] = scores(gold[conf == c], pred[conf == c])
    if "y_A" not in d:  # one labeller (v1)
        return out
    ya, yb = d["y_A"][sel], d["y_B"][sel]
    pa = pm.proba(d["x"][sel]).argmax(axis=1)
    out["vs_A"], out["vs_B"], out["A_vs_B"] = scores(ya, pa), scores(yb, pa), scores(ya, yb)
    return out


def md_held_out(title: str, h: dict) -> list[str]:
    """Markdown of one :func:`held_out_report`."""
    md = [f"### {title}", ""]
    md += md_scores("learned classifier vs consensus", h["consensus"])
    md += md_scores("hand-set rules (Thresholds) vs consensus", h["rules_consensus"])
    if "vs_A" in h:
        md += md_scores("learned classifier vs labeller A (disputed maps included)", h["vs_A"])
        md += md_scores("learned classifier vs labeller B (disputed maps included)", h["vs_B"])
        md += md_scores("labeller B vs labeller A (human agreement, same items)", h["A_vs_B"])
    cal = h["calibration"]
    md += ["#### Calibration of the winning probability (vs consensus)", "",
           f"ECE {cal['ece']:.3f}, Brier {cal['brier']:.3f}; uncertain (p < {UNCERTAIN_BELOW}) "
           f"{cal['uncertain_share']:.1%} of maps, accuracy {cal['accuracy_uncertain'] or 0:.3f} there vs "
           f"{cal['accuracy_certain'] or 0:.3f} on the rest.", "",
           "| p bin | maps | mean p | accuracy |", "|---|---:|---:|---:|"]
    md += [f"| {r['bin']} | {r['n']} | {r['confidence']:.3f} | {r['accuracy']:.3f} |" for r in cal["table"]]
    for c in ("high", "resolved"):
        if f"consensus_{c}" in h:
            sc = h[f"consensus_{c}"]
            md += ["", f"Consensus confidence `{c}` only: macro-F1 {sc['macro_f1']:.3f}, accuracy {sc['accuracy']:.3f} "
                   f"(n = {sc['n']})."]
    return [*md, ""]


def _fresh_labels(args: argparse.Namespace) -> dict[str, Path | None]:
    """``--labels-v4`` .. as :func:`load_items`'s ``fresh_labels``."""
    return {t: getattr(args, f"labels_{t}") for t in FRESH}


def score_fresh(args: argparse.Namespace) -> None:
    """The one look at a fresh test sample (``--data v4``, ``v5`` or ``v6``): the packaged (frozen) model, no CV and
    no choice, scored against the consensus overall, per stratum and against each labeller. Checks first that the
    model is what its training data (:data:`FRESH`: ``all`` for v4, ``all4`` for v5 and v6) refits from its recorded
    candidate on the same training maps (so nothing about the test sample went into it)."""
    from sklearn.base import clone

    from attnx.kernels.pattern_model import PatternModel

    tag = args.data
    out_json = args.out / f"patterns_{tag}.json"
    if out_json.exists() and not args.again:
        raise SystemExit(f"{out_json}: the {tag} sample was already scored (it is meant for one look; --again to redo)")
    pm = PatternModel.load(args.model_json)
    d = load_items(tag, args.workdir, args.labels, _fresh_labels(args))
    usable = d["y_consensus"] >= 0
    train = (d["split"] == "train") & usable
    is_t = d["set"] == tag
    train_data = FRESH[tag]["train"]
    name = pm.info.get("training", {}).get("model")
    refit = {"candidate": name, "training_data": train_data, "matches": None}
    if name in candidates():
        js = to_json(clone(candidates()[name]).fit(d["x"][train], d["y_consensus"][train]), {"data": train_data},
                     d["x"][train])
        diff = max(float(np.abs(np.asarray(js[k]) - getattr(pm, k)).max()) for k in ("coef", "intercept", "mean"))
        refit.update(matches=bool(diff < 1e-4), max_abs_diff=diff)
    sets = " + ".join(["v2", *TRAINING[train_data]])
    report = {"data": tag, "model": pm.source, "model_digest": pm.digest, "model_version": pm.info.get("version"),
              "train_items_refit_check": int(train.sum()), "refit_check": refit,
              "n_items": int(is_t.sum()), "disputed": int((is_t & ~usable).sum()), "load": _load(),
              "held_out": held_out_report(d, is_t, pm)}
    md = [f"# The pattern classifier on the {tag} test sample (scored once; model {pm.source}, version "
          f"{pm.info.get('version')}, sha256 {pm.digest})", "",
          f"{int(is_t.sum())} maps of `validation/{SAMPLED[FRESH[tag]['set']][0]}`, {report['disputed']} disputed "
          "(left out of the consensus scores). Refit check: the model's recorded candidate "
          f"`{name}` refitted on the {int(train.sum())} {sets} training maps "
          + ("gives the same weights." if refit["matches"] else f"does NOT give the same weights ({refit})."), ""]
    md += md_held_out(f"{tag}, all maps", report["held_out"])
    for stratum in ("random", "block_candidate"):
        sel = is_t & (d["stratum"] == stratum)
        report[f"held_out_{stratum}"] = held_out_report(d, sel, pm)
        md += md_held_out(f"{tag}, stratum {stratum}", report[f"held_out_{stratum}"])
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"patterns_{tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=["v1", "v2", "v3", "all", "v4", "all4", "v5", "v6"], default="all",
                    help="v3 = v2 + the v3 block sample (split train / test); all = every v2 + v3 map for training "
                         "(version 6); all4 = every v2 + v3 + v4 map for training (version 7, the shipped model); "
                         "v4 / v5 / v6 = score the packaged model once on that fresh test sample")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/attnx_train_patterns"))
    ap.add_argument("--labels", type=Path, default=None,
                    help="v2 labels CSV (default: validation/pattern_labels_v2.csv)")
    for t in FRESH:
        ap.add_argument(f"--labels-{t}", type=Path, default=None,
                        help=f"{t} labels CSV (default: validation/pattern_labels_{t}.csv, by consensus_labels.py)")
    ap.add_argument("--model-json", type=Path, default=None,
                    help="--data v4 / v5 / v6: the model scored (default: the packaged attnx/data/pattern_model.json)")
    ap.add_argument("--again", action="store_true",
                    help="--data v4 / v5 / v6: score although --out holds patterns_<data>.json (each set is "
                         "meant for one look)")
    ap.add_argument("--model", default=None, help="fit this candidate instead of the CV winner among logreg")
    ap.add_argument("--no-cnn", action="store_true", help="skip the CNN candidate")
    ap.add_argument("--only", default=None, help="cross-validate only candidates whose name matches this regex")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the 5-fold grouped CV")
    ap.add_argument("--cv-only", action="store_true",
                    help="cross-validate on the training split and stop: the held-out split is not scored")
    ap.add_argument("--write", action="store_true", help=f"write the model to {MODEL_OUT.relative_to(ROOT)}")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from sklearn.base import clone

    if args.data in FRESH:
        score_fresh(args)
        return
    d = load_items(args.data, args.workdir, args.labels, _fresh_labels(args))
    usable = d["y_consensus"] >= 0  # disputed consensus labels are left out of training and scoring
    train = (d["split"] == "train") & usable
    test = (d["split"] == "test") & usable
    parts = {str(s_): {"train": int((train & (d["set"] == s_)).sum()), "test": int((test & (d["set"] == s_)).sum()),
                  "disputed": int((~usable & (d["set"] == s_)).sum())} for s_ in np.unique(d["set"])}
    print(f"{args.data}: {len(d['item'])} items, train {train.sum()}, test {test.sum()}, "
          f"disputed {int((~usable).sum())}; {parts}", flush=True)
    load_before = _load()
    cv = cross_validate(d, train, use_cnn=not args.no_cnn, repeats=args.repeats, only=args.only)
    cv_info = {"data": args.data, "train": int(train.sum()), "parts": parts, "repeats": args.repeats,
               "load_before": load_before, "load_after": _load(), "cv": cv}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = STEM.get(args.data, "")  # versions 6 and 7 beside version 5's files (RESULTS reads v5's)
    (args.out / f"patterns_cv{stem}.json").write_text(json.dumps(cv_info, indent=1) + "\n")  # before any held-out look
    if args.cv_only:
        return
    logreg = [r for r in cv if r["model"].startswith("logreg") and "v3 features" not in r["model"]]
    chosen = args.model or max(logreg, key=lambda r: (r["macro_f1"], r["accuracy"]))["model"]
    best_any = max(cv, key=lambda r: (r["macro_f1"], r["accuracy"]))
    row_of = {r["model"]: r for r in cv}
    runs_best, runs_chosen = (np.array(row_of[k]["macro_f1_runs"]) for k in (best_any["model"], chosen))
    # same CV splits per repeat; the CNN has one repeat only (then no paired difference)
    diff = runs_best - runs_chosen if len(runs_best) == len(runs_chosen) else np.zeros(0)
    paired = {"best": best_any["model"], "chosen": chosen, "repeats": len(diff),
              "mean_diff": float(diff.mean()) if len(diff) else None,
              "sd_diff": float(diff.std()) if len(diff) else None, "best_wins": int((diff > 0).sum())}
    model = clone(candidates()[chosen]).fit(d["x"][train], d["y_consensus"][train])
    info = {"data": args.data, "train_items": int(train.sum()), "model": chosen,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    js = to_json(model, info, d["x"][train])
    from attnx.kernels.pattern_model import PatternModel

    tmp = args.workdir / "pattern_model.json"
    tmp.write_text(json.dumps(js, indent=1) + "\n")
    pm = PatternModel.load(tmp)  # evaluate through the shipped code path, not sklearn
    is_test = d["split"] == "test"
    report: dict = {"data": args.data, "n_items": len(d["item"]), "train": int(train.sum()), "test": int(test.sum()),
                    "disputed": int((~usable).sum()), "parts": parts, "repeats": args.repeats,
                    "load_cv": [load_before, cv_info["load_after"]], "cv": cv, "chosen": chosen,
                    "chosen_by": "--model" if args.model else "CV on train (best macro-F1 among logreg)",
                    "best_cv": best_any["model"], "best_vs_chosen_cv": paired}
    if test.any():
        report["held_out"] = held_out_report(d, is_test, pm)
    if args.data == "v3":
        for s_ in ("v3", "v2"):
            report[f"held_out_{s_}"] = held_out_report(d, is_test & (d["set"] == s_), pm)
    md = [f"# Learned pattern classifier ({args.data} labels)", "",
          f"{len(d['item'])} labelled maps; train {int(train.sum())}, held-out test {int(test.sum())} "
          f"(split by record; {int((~usable).sum())} disputed maps left out). Per labelled set: "
          + "; ".join(f"{k}: train {v['train']}, test {v['test']}, disputed {v['disputed']}" for k, v in parts.items())
          + f". Model chosen by mean macro-F1 of {args.repeats} x 5-fold CV grouped by record on the training split "
          f"(load {load_before[0]:.1f} before, {cv_info['load_after'][0]:.1f} after): **{chosen}** "
          f"({report['chosen_by']}; best CV candidate overall: {best_any['model']}, paired difference to the "
          f"chosen one over the {paired['repeats']} repeats {paired['mean_diff'] or 0:+.3f} (sd "
          f"{paired['sd_diff'] or 0:.3f}, ahead in {paired['best_wins']}); only the logistic models can be "
          "shipped as the packaged JSON today).", "",
          "| candidate (CV on train) | folds x repeats | macro-F1 (sd) | accuracy | "
          + " | ".join(f"F1 {SHORT[n]}" for n in PATTERNS) + " | s |", "|---|---:|---:|---:|" + "---:|" * len(PATTERNS)
          + "---:|"]
    md += [f"| {r['model']} | {r['folds']} x {r['repeats']} | {r['macro_f1']:.3f} ({r['macro_f1_sd']:.3f}) | "
           f"{r['accuracy']:.3f} | "
           + " | ".join(f"{r['f1'][n]:.2f}" for n in PATTERNS) + f" | {r['seconds']:.0f} |" for r in cv]
    if args.data in ("v2", "v3", "all", "all4"):  # the 240 v1 maps, labelled by a third person with other conventions
        v1 = load_items("v1", args.workdir)
        g1 = v1["y_consensus"]
        report["v1_labels"] = {"learned": scores(g1, pm.proba(v1["x"]).argmax(axis=1)),
                               "rules": scores(g1, v1["rules"].astype(int))}
    md += [""]
    if "held_out" in report:
        md += md_held_out("Held-out: the whole test split" + (" (v2 test + v3 test)" if args.data == "v3" else ""),
                          report["held_out"])
    else:
        fresh = [t for t, f in FRESH.items() if f["train"] == args.data]
        md += ["No held-out split: every labelled map was used for the CV and the refit (the "
               f"{' / '.join(fresh)} test samples are scored separately, once each, by "
               f"`--data {' / '.join(fresh)}`).", ""]
    if args.data == "v3":
        md += md_held_out("Held-out, v3 part only (fresh maps: the v3 block sample's test records)",
                          report["held_out_v3"])
        md += md_held_out("Held-out, v2 part only (v2's test split, scored before)", report["held_out_v2"])
    if "v1_labels" in report:
        md += md_scores("learned classifier vs the 240 v1 labels (third labeller, never trained on)",
                        report["v1_labels"]["learned"])
        md += md_scores("hand-set rules vs the 240 v1 labels (their thresholds were tuned on 96 of them)",
                        report["v1_labels"]["rules"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"patterns_learned{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"patterns_learned{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if args.write:
        if "held_out" in report:
            js["training"]["held_out_macro_f1"] = report["held_out"]["consensus"]["macro_f1"]
        else:
            js["training"]["cv_macro_f1"] = row_of[chosen]["macro_f1"]
            js["training"]["cv_macro_f1_sd"] = row_of[chosen]["macro_f1_sd"]
        if "held_out_v3" in report:
            js["training"]["held_out_v3_macro_f1"] = report["held_out_v3"]["consensus"]["macro_f1"]
        MODEL_OUT.write_text(json.dumps(js, indent=1) + "\n")
        print(f"wrote {MODEL_OUT}")


if __name__ == "__main__":
    main()
