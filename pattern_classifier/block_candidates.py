"""How many textbook *block* maps does MiniLM make on sentence pairs? Score, count, render blind for labelling.

Kovaleva et al. (2019, §3) call a map *block* when queries attend within their own segment, spread over it,
with no dominant column. This tool measures that strictly on many real pair maps, without any classifier:

1. draws ``--pairs`` (question, sentence) / (premise, hypothesis) pairs from ``glue_qnli_dev/dev.tsv`` and
   ``glue_rte_dev/dev.tsv`` in seeded order (both segments >= ``--min-seg`` content wordpieces, at most
   ``--max-len`` wordpieces in all, none of the records of ``validation/pattern_sample_v2.csv``) and extracts
   them with ``attnx extract`` (MiniLM, float16) into ``--work``;
2. streams every map (all 72 heads) through :func:`strict_block` and writes the score distribution, the
   number of maps above several thresholds (overall and per head) to ``--out`` as JSON and markdown, and the
   same score for the 1,008 labelled v2 maps by their consensus label (what a threshold would have caught);
3. (``--render DIR``) draws the ``--top`` highest-scoring maps (at most ``--per-record`` per record and
   ``--per-head`` per (layer, head)) mixed with ``--controls`` random pair maps of the same pool, shuffled,
   blind (panel title: item id, "pair", length; no score, no layer/head), as ``sheet_NNN.png`` + ``items.csv``
   (item, png) in DIR, and the key (stratum, source, line, layer, head, lengths; no score) to ``--sample-csv``.
   The scores of the rendered items go to ``--scores-csv``, meant to stay away from the labellers.

No text leaves the work folder. Usage::

    python pattern_classifier/block_candidates.py --work /tmp/blocks_v3 --render /work/labels/blocks_v3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render_label_maps as tool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED = 2027
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
# "clean" block shape, read off the 15 consensus block maps of v2 (10 of the 11 scoring >= 0.3 pass): a faint
# +-1 diagonal, little cross-segment mass, no content-token stripe
CLEAN = {"diag1_below": 0.13, "cross_below": 0.12, "col_top_below": 0.15}


def clean(scores: np.ndarray) -> np.ndarray:
    """``scores (..., 5)`` -> bool (...): the map passes the :data:`CLEAN` shape filter."""
    return ((scores[..., 4] < CLEAN["diag1_below"]) & (scores[..., 2] < CLEAN["cross_below"])
            & (scores[..., 3] < CLEAN["col_top_below"]))


def strict_block(maps: np.ndarray, len_a: int) -> np.ndarray:
    """Strict block score of every map of one pair record: ``maps (M, l, l)`` -> ``(M, 5)`` float64.

    Columns: ``score, sink, cross, col_top, diag1``. Special keys are [CLS] (0) and the two [SEP]s (``len_a - 1``,
    ``l - 1``); content rows / keys are the others. For a content query ``i`` in segment S, ``w_i`` = its mass
    on content keys of S farther than 1 token from ``i`` (spread inside its own segment: no sink, no
    diagonal). ``score`` = min over the two segments of the mean ``w_i`` of that segment's content rows (both
    segments must look like a block). ``sink``: mean mass of content rows on special keys; ``cross``: on
    content keys of the other segment; ``col_top``: the largest mean mass of one content key column (a
    vertical stripe inside a segment would also score as own-segment mass); ``diag1``: mean mass of content
    rows within 1 token of the diagonal (previous, self, next: what makes a map vertical_diagonal).
    """
    m, l, _ = maps.shape
    seg = (np.arange(l) >= len_a).astype(np.int8)
    special = np.zeros(l, bool)
    special[[0, len_a - 1, l - 1]] = True
    content = ~special
    d = np.abs(np.arange(l)[:, None] - np.arange(l)[None, :])
    same = seg[:, None] == seg[None, :]
    keys_own = same & (d > 1) & content[None, :]  # (l, l)
    keys_cross = ~same & content[None, :]
    p = maps.astype(np.float64)
    w = (p * keys_own).sum(axis=2)  # (M, l)
    out = np.zeros((m, 5))
    rows_a = content & (seg == 0)
    rows_b = content & (seg == 1)
    out[:, 0] = np.minimum(w[:, rows_a].mean(axis=1), w[:, rows_b].mean(axis=1))
    rows = content
    out[:, 1] = p[:, rows][:, :, special].sum(axis=2).mean(axis=1)
    out[:, 2] = (p * keys_cross).sum(axis=2)[:, rows].mean(axis=1)
    out[:, 3] = p[:, rows][:, :, content].mean(axis=1).max(axis=1)
    out[:, 4] = (p * (d <= 1)).sum(axis=2)[:, rows].mean(axis=1)
    return out


def strict_block_ref(attn: np.ndarray, len_a: int) -> tuple[float, float, float, float, float]:
    """One map ``(l, l)``, row by row in plain Python: the slow twin of :func:`strict_block` (tests)."""
    l = attn.shape[0]
    special = {0, len_a - 1, l - 1}

    def seg(i: int) -> int:
        return 0 if i < len_a else 1

    per_seg: dict[int, list[float]] = {0: [], 1: []}
    sink, cross, band, cols = [], [], [], np.zeros(l)
    for i in range(l):
        if i in special:
            continue
        per_seg[seg(i)].append(sum(float(attn[i, j]) for j in range(l)
                                   if j not in special and seg(j) == seg(i) and abs(i - j) > 1))
        sink.append(sum(float(attn[i, j]) for j in special))
        cross.append(sum(float(attn[i, j]) for j in range(l) if j not in special and seg(j) != seg(i)))
        band.append(sum(float(attn[i, j]) for j in range(l) if abs(i - j) <= 1))
        cols += attn[i]
    n = len(sink)
    col_top = max(cols[j] / n for j in range(l) if j not in special)
    return (min(float(np.mean(per_seg[0])), float(np.mean(per_seg[1]))), float(np.mean(sink)),
            float(np.mean(cross)), float(col_top), float(np.mean(band)))


def draw_pairs(n: int, min_seg: int, max_len: int, seed: int = SEED) -> list[tool.SourceRecord]:
    """``n`` pair records (QNLI dev + RTE dev, seeded order), both segments >= ``min_seg`` content
    wordpieces, at most ``max_len`` wordpieces, none that is a record of the v2 labelled sample."""
    tok = tool._tokenizer()
    used = {(r["source"], int(r["line"])) for r in csv.DictReader(open(ROOT / "validation" / "pattern_sample_v2.csv",
                                                                       encoding="utf-8"))}
    cands = [(src, line, a, b) for src in tool.V2_PAIR_SOURCES for line, a, b in tool._v2_candidates(src)]
    rng = np.random.default_rng(seed)
    out: list[tool.SourceRecord] = []
    seen: set[tuple[str, str | None]] = set()
    for k in rng.permutation(len(cands)):
        src, line, a, b = cands[int(k)]
        if (src, line) in used or (a, b) in seen:
            continue
        enc = tok(a, b)  # type: ignore[operator]
        n_tok = len(enc["input_ids"])
        n_a = len(tok(a)["input_ids"])  # type: ignore[operator]  # [CLS] a [SEP]
        if n_tok <= max_len and n_a - 2 >= min_seg and n_tok - n_a - 1 >= min_seg:
            out.append(tool.SourceRecord(src, line, a, b, n_tok))
            seen.add((a, b))
            if len(out) == n:
                break
    return out


def score_store(store_path: Path, n_layers: int = tool.N_LAYERS, n_heads: int = tool.N_HEADS) -> tuple[np.ndarray,
                                                                                                        np.ndarray]:
    """Scores ``(N, L, H, 5)`` of every map of a pair store (streamed by block) and ``len_a (N,)``."""
    import attnx

    st = attnx.open_store(store_path)
    scores = np.zeros((len(st), n_layers, n_heads, 5))
    len_a = np.zeros(len(st), np.int64)
    for blk in st.blocks():
        for k, rid in enumerate(blk.record_ids):
            l, la = int(blk.lengths[k]), int(min(blk.len_a[k], blk.lengths[k]))
            maps = blk.attn[blk.attn_offsets[k]:blk.attn_offsets[k + 1]].astype(np.float32).reshape(-1, l, l)
            scores[rid] = strict_block(maps, la).reshape(n_layers, n_heads, -1)
            len_a[rid] = la
    return scores, len_a


def labelled_scores(work: Path) -> dict:
    """The strict score of the 1,008 labelled v2 maps (pair maps only), by consensus label."""
    records, _ = tool.build_records_v2()
    store = tool.extract_sample(tool.Sample(records, []), work / "v2")
    index = {(r.source, r.line): k for k, r in enumerate(records)}
    labels = {r["item"]: r["consensus"] for r in csv.DictReader(open(ROOT / "validation" / "pattern_labels_v2.csv",
                                                                     encoding="utf-8"))}
    sc, _ = score_store(store)
    by: dict[str, list[float]] = {}
    for r in csv.DictReader(open(ROOT / "validation" / "pattern_sample_v2.csv", encoding="utf-8")):
        if int(r["len_a"]) >= int(r["length"]):
            continue
        k = index[(r["source"], int(r["line"]))]
        v = sc[k, int(r["layer"]), int(r["head"])]
        by.setdefault(labels[r["item"]], []).append((float(v[0]), bool(clean(v))))
    out = {}
    for lab, v in sorted(by.items()):
        a, c = np.array([x[0] for x in v]), np.array([x[1] for x in v])
        out[lab] = {"n": len(v), "median": float(np.median(a)), **{f">={t}": int(np.sum(a >= t)) for t in THRESHOLDS},
                    **{f"clean>={t}": int(np.sum((a >= t) & c)) for t in THRESHOLDS}}
    return out


def choose(scores: np.ndarray, top: int, per_record: int, per_head: int, controls: int,
           seed: int = SEED) -> list[tuple[int, int, int, str]]:
    """``(record, layer, head, stratum)``: the ``top`` best strict scores among maps passing :func:`clean`,
    under the caps, then ``controls`` random other maps of the pool."""
    flat = np.where(clean(scores), scores[..., 0], -1.0).ravel()
    order = np.argsort(-flat, kind="stable")
    n, L, H = scores.shape[:3]
    chosen: list[tuple[int, int, int, str]] = []
    per_rec: dict[int, int] = {}
    per_hd: dict[tuple[int, int], int] = {}
    taken = set()
    for f in order:
        if len(chosen) >= top:
            break
        r, layer, head = np.unravel_index(int(f), (n, L, H))
        r, layer, head = int(r), int(layer), int(head)
        if per_rec.get(r, 0) >= per_record or per_hd.get((layer, head), 0) >= per_head:
            continue
        per_rec[r] = per_rec.get(r, 0) + 1
        per_hd[(layer, head)] = per_hd.get((layer, head), 0) + 1
        chosen.append((r, layer, head, "block_candidate"))
        taken.add(int(f))
    rng = np.random.default_rng([seed, 3])
    for f in rng.permutation(len(flat)):
        if len(chosen) >= top + controls:
            break
        if int(f) not in taken:
            r, layer, head = (int(v) for v in np.unravel_index(int(f), (n, L, H)))
            chosen.append((r, layer, head, "control"))
    order2 = rng.permutation(len(chosen))
    return [chosen[int(k)] for k in order2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnx_blocks_v3"))
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--min-seg", type=int, default=6, help="content wordpieces each segment needs at least")
    ap.add_argument("--max-len", type=int, default=96)
    ap.add_argument("--out", type=Path, default=ROOT / "pattern_classifier" / "results")
    ap.add_argument("--render", type=Path, default=None, help="folder for the blind PNG sheets + items.csv")
    ap.add_argument("--top", type=int, default=300)
    ap.add_argument("--controls", type=int, default=60)
    ap.add_argument("--per-record", type=int, default=3)
    ap.add_argument("--per-head", type=int, default=30)
    ap.add_argument("--sample-csv", type=Path, default=ROOT / "validation" / "block_sample_v3.csv")
    ap.add_argument("--scores-csv", type=Path, default=None, help="scores of the rendered items (default: WORK/)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    records = draw_pairs(args.pairs, args.min_seg, args.max_len)
    store = tool.extract_sample(tool.Sample(records, []), args.work)
    t1 = time.perf_counter()
    scores, len_a = score_store(store)
    t2 = time.perf_counter()
    s = scores[..., 0]
    lengths = np.array([r.n_tokens for r in records])
    counts = {f">={t}": int((s >= t).sum()) for t in THRESHOLDS}
    heads = {f">={t}": int(((s >= t).sum(axis=0) > 0).sum()) for t in THRESHOLDS}
    per_head = {f"L{a}H{h}": {f">={t}": int((s[:, a, h] >= t).sum()) for t in THRESHOLDS}
                for a in range(s.shape[1]) for h in range(s.shape[2]) if (s[:, a, h] >= THRESHOLDS[1]).any()}
    ok = clean(scores)
    clean_counts = {f">={t}": int(((s >= t) & ok).sum()) for t in THRESHOLDS}
    clean_heads = {f">={t}": int((((s >= t) & ok).sum(axis=0) > 0).sum()) for t in THRESHOLDS}
    report = {
        "pairs": len(records), "maps": int(s.size), "seed": SEED, "min_seg": args.min_seg, "max_len": args.max_len,
        "sources": {src: sum(r.source == src for r in records) for src in tool.V2_PAIR_SOURCES},
        "length": {"min": int(lengths.min()), "median": float(np.median(lengths)), "max": int(lengths.max())},
        "seconds": {"draw_extract": t1 - t0, "score": t2 - t1},
        "quantiles": {str(q): float(np.quantile(s, q)) for q in (0.5, 0.9, 0.99, 0.999, 1.0)},
        "maps_at_or_above": counts, "heads_with_any": heads, "per_head": per_head,
        "clean_filter": CLEAN, "clean_at_or_above": clean_counts, "clean_heads_with_any": clean_heads,
        "records_with_any_ge_0.5": int(((s >= 0.5).reshape(len(s), -1).any(axis=1)).sum()),
        "labelled_v2_pair_maps": labelled_scores(args.work),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "block_candidates.json").write_text(json.dumps(report, indent=1) + "\n")
    md = ["# Strict block maps in MiniLM sentence pairs (no classifier)", "",
          f"{len(records)} pairs ({', '.join(f'{k} {v}' for k, v in report['sources'].items())}), "
          f"{s.size} maps; lengths {report['length']['min']}-{report['length']['max']} wordpieces (median "
          f"{report['length']['median']:.0f}); both segments >= {args.min_seg} content wordpieces. Score: "
          "min over the two segments of the mean mass a content query puts on content keys of its own segment "
          "farther than 1 token (`pattern_classifier/block_candidates.py`, `strict_block`).", "",
          "Quantiles of the score over all maps: " + ", ".join(f"q{q} {v:.3f}" for q, v in report["quantiles"].items())
          + f". Clean shape filter (from the labelled blocks): diag1 < {CLEAN['diag1_below']}, cross < "
          f"{CLEAN['cross_below']}, col_top < {CLEAN['col_top_below']}.", "",
          "| score >= | maps | (layer, head) with any | maps passing the clean filter | heads |",
          "|---:|---:|---:|---:|---:|"]
    md += [f"| {t} | {counts[f'>={t}']} | {heads[f'>={t}']} | {clean_counts[f'>={t}']} | {clean_heads[f'>={t}']} |"
           for t in THRESHOLDS]
    md += ["", f"Records with any map >= 0.5: {report['records_with_any_ge_0.5']}.", "",
           "Heads with a map scoring >= 0.3 (maps per threshold):", "",
           "| head | " + " | ".join(f">= {t}" for t in THRESHOLDS) + " |", "|---|" + "---:|" * len(THRESHOLDS)]
    md += [f"| {k} | " + " | ".join(str(v[f'>={t}']) for t in THRESHOLDS) + " |"
           for k, v in sorted(per_head.items(), key=lambda kv: -kv[1][">=0.3"])]
    md += ["", "The same score on the labelled v2 pair maps, by consensus label (all / passing the clean filter):",
           "", "| consensus | maps | median | " + " | ".join(f">= {t}" for t in THRESHOLDS[:4]) + " |",
           "|---|---:|---:|" + "---:|" * 4]
    md += [f"| {lab} | {v['n']} | {v['median']:.3f} | "
           + " | ".join(f"{v[f'>={t}']} / {v[f'clean>={t}']}" for t in THRESHOLDS[:4]) + " |"
           for lab, v in report["labelled_v2_pair_maps"].items()]
    (args.out / "block_candidates.md").write_text("\n".join(md) + "\n")
    print("\n".join(md), flush=True)
    if args.render is None:
        return
    picks = choose(scores, args.top, args.per_record, args.per_head, args.controls)
    items = [tool.Item(f"b{k + 1:04d}", r, layer, head) for k, (r, layer, head, _) in enumerate(picks)]
    maps = tool.item_maps(tool.Sample(records, items), store)
    where = tool.render_blind(items, maps, args.render)
    tool.write_manifest(items, where, args.render)
    strata = {it.item: pick[3] for it, pick in zip(items, picks, strict=True)}
    tool.write_sample_key(args.sample_csv, items, records, strata, maps, where)
    scores_csv = args.scores_csv or args.work / "rendered_scores.csv"
    with open(scores_csv, "w", newline="", encoding="utf-8") as g:
        ws = csv.writer(g, lineterminator="\n")
        ws.writerow(["item", "stratum", "score", "sink", "cross", "col_top", "diag1"])
        for it in items:
            ws.writerow([it.item, strata[it.item], *(f"{v:.4f}" for v in scores[it.record, it.layer, it.head])])
    print(f"rendered {len(items)} maps ({sum(p[3] == 'block_candidate' for p in picks)} candidates) to "
          f"{args.render}; key {args.sample_csv}; scores {scores_csv}; pid {os.getpid()}")


if __name__ == "__main__":
    main()
