"""A fresh, never-seen test set for the pattern classifier (issue 10): ``validation/pattern_sample_v{4,5,6}.csv``.

Every earlier held-out split has been looked at (v2's test part six times, v3's once), so the classifier's
score on them is no longer a clean estimate. This tool draws new maps from records that no earlier sample
used (v1, v2, v3; matched by source file and physical line), in two strata:

- ``random``: v2's design with a new seed (2029): singles ``--singles-per-bin`` per wordpiece-length bin
  (8-20, 21-40, 41-60, 61-80) from each of EWT dev and GUM dev; pairs ``--pairs-per-bin`` per bin (10-32,
  33-48, 49-64, 65-80) from each of QNLI dev and RTE dev; every record gives 12 (layer, head) maps,
  consecutive seeded permutations of all 72 heads. Representative of MiniLM on these corpora.
- ``block_candidate``: ``--block-pool`` further pair records (v3's rules: both segments >= 6 content
  wordpieces, <= 96 in all) scored by v3's strict block score (``pattern_classifier/block_candidates.py``), the
  ``--blocks`` best maps passing its clean-shape filter (at most 2 per record, ``--per-head`` per head).
  No classifier is used anywhere: the score only chooses maps and is never shown.

Items ``t0001``.. are numbered in a seeded shuffle of both strata and rendered blind (panel title: item,
single|pair, l) by ``render_label_maps.render_blind``. Usage::

    python pattern_classifier/sample_fresh_test_set.py --work /tmp/attnx_v4 --render /work/labels/v4
    python pattern_classifier/sample_fresh_test_set.py --work /tmp/attnx_v5 --render /work/labels/v5 \
        --seed 2030 --prefix u --sample-csv validation/pattern_sample_v5.csv  # v5: excludes v4's records too
    python pattern_classifier/sample_fresh_test_set.py --work /tmp/attnx_v6 --render /work/labels/v6 \
        --seed 2031 --prefix w --sample-csv validation/pattern_sample_v6.csv  # v6: excludes v4's and v5's
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import block_candidates as blocks  # noqa: E402
import render_label_maps as tool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED = 2029


# the samples each seed's draw excludes: every sample drawn before it (so each draw can be rebuilt exactly)
PRIOR: dict[int, tuple[str, ...]] = {2029: ("pattern_sample_v2.csv", "block_sample_v3.csv")}
PRIOR[2030] = (*PRIOR[2029], "pattern_sample_v4.csv")
PRIOR[2031] = (*PRIOR[2030], "pattern_sample_v5.csv")


# single-sentence sources per seed (default: v2's); v6 (2031) takes EWT train, because v1-v5 used up EWT dev's
# 61-80-wordpiece sentences
SINGLE_SOURCES: dict[int, tuple[str, ...]] = {
    2031: ("ud_english_ewt/train/sentences.txt", "ud_english_gum/dev/sentences.txt"),
}


def used_records(seed: int = SEED) -> set[tuple[str, int]]:
    """(source, physical line) of every record of v1 and of the samples :data:`PRIOR` names for ``seed``."""
    used: set[tuple[str, int]] = set()
    for name in PRIOR[seed]:
        for r in csv.DictReader(open(ROOT / "validation" / name, encoding="utf-8")):
            used.add((r["source"], int(r["line"])))
    for r in csv.DictReader(open(ROOT / "validation" / "pattern_labels.csv", encoding="utf-8")):
        used.add((r["source"], int(r["line"])))
    return used


def draw_records(singles_per_bin: int, pairs_per_bin: int, block_pool: int,
                 seed: int = SEED) -> tuple[list[tool.SourceRecord], int]:
    """Random records then the block pool; returns ``(records, n_random)``."""
    rng = np.random.default_rng(seed)
    tok = tool._tokenizer()
    used = used_records(seed)
    records: list[tool.SourceRecord] = []
    for src in SINGLE_SOURCES.get(seed, tool.V2_SINGLE_SOURCES):
        records += tool._v2_draw(rng, src, singles_per_bin, tok, used)
    for src in tool.V2_PAIR_SOURCES:
        records += tool._v2_draw(rng, src, pairs_per_bin, tok, used)
    n_random = len(records)
    cands = [(src, line, a, b) for src in tool.V2_PAIR_SOURCES for line, a, b in tool._v2_candidates(src)]
    seen = {(r.text, r.text_b) for r in records}
    for k in np.random.default_rng([seed, 4]).permutation(len(cands)):
        if len(records) - n_random >= block_pool:
            break
        src, line, a, b = cands[int(k)]
        if (src, line) in used or (a, b) in seen:
            continue
        n_tok = len(tok(a, b)["input_ids"])  # type: ignore[operator]
        n_a = len(tok(a)["input_ids"])  # type: ignore[operator]
        if n_tok <= 96 and n_a - 2 >= 6 and n_tok - n_a - 1 >= 6:
            records.append(tool.SourceRecord(src, line, a, b, n_tok))
            seen.add((a, b))
            used.add((src, line))
    return records, n_random


def draw_items(pool_store: Path, records: list[tool.SourceRecord], n_random: int, n_blocks: int, per_head: int,
               seed: int = SEED, prefix: str = "t") -> tuple[list[tool.Item], dict[str, str]]:
    """12 maps of every random record plus the block candidates of ``pool_store`` (the store of
    ``records[n_random:]``), shuffled and numbered ``t0001``.."""
    rng = np.random.default_rng([seed, 2])
    n_single = sum(r.text_b is None for r in records[:n_random])
    drawn: list[tuple[int, int, int, str]] = []
    for group in (range(n_single), range(n_single, n_random)):
        for k, (layer, head) in enumerate(tool._slots(rng, len(group) * 12)):
            drawn.append((group[k // 12], layer, head, "random"))
    scores, _ = blocks.score_store(pool_store)
    for r, layer, head, _s in blocks.choose(scores, n_blocks, 2, per_head, 0, seed):
        drawn.append((n_random + r, layer, head, "block_candidate"))
    items, stratum = [], {}
    for n, k in enumerate(rng.permutation(len(drawn))):
        r, layer, head, s = drawn[int(k)]
        name = f"{prefix}{n + 1:04d}"
        items.append(tool.Item(name, r, layer, head))
        stratum[name] = s
    return items, stratum


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnx_v4"))
    ap.add_argument("--render", type=Path, required=True, help="folder for the blind PNG sheets + items.csv")
    ap.add_argument("--sample-csv", type=Path, default=ROOT / "validation" / "pattern_sample_v4.csv")
    ap.add_argument("--singles-per-bin", type=int, default=4)
    ap.add_argument("--pairs-per-bin", type=int, default=3)
    ap.add_argument("--block-pool", type=int, default=600)
    ap.add_argument("--blocks", type=int, default=144)
    ap.add_argument("--per-head", type=int, default=24)
    ap.add_argument("--seed", type=int, default=SEED, choices=sorted(PRIOR), help="2029 = v4, 2030 = v5, 2031 = v6")
    ap.add_argument("--prefix", default="t", help="item id prefix (t = v4)")
    args = ap.parse_args(argv)
    if args.sample_csv.exists():
        raise SystemExit(f"{args.sample_csv} exists: a drawn sample is never redrawn over")

    records, n_random = draw_records(args.singles_per_bin, args.pairs_per_bin, args.block_pool, args.seed)
    store = tool.extract_sample(tool.Sample(records[:n_random], []), args.work / "random")
    pool = tool.extract_sample(tool.Sample(records[n_random:], []), args.work / "pool")
    items, stratum = draw_items(pool, records, n_random, args.blocks, args.per_head, args.seed, args.prefix)
    maps = {}
    rand = [it for it in items if it.record < n_random]
    maps.update(tool.item_maps(tool.Sample(records[:n_random], rand), store))
    pool_items = [tool.Item(it.item, it.record - n_random, it.layer, it.head) for it in items if it.record >= n_random]
    maps.update(tool.item_maps(tool.Sample(records[n_random:], pool_items), pool))
    where = tool.render_blind(items, maps, args.render)
    tool.write_manifest(items, where, args.render)
    tool.write_sample_key(args.sample_csv, items, records, stratum, maps, where)
    counts = {s: sum(v == s for v in stratum.values()) for s in ("random", "block_candidate")}
    print(f"{len(items)} items {counts} -> {args.render}, {args.sample_csv}")


if __name__ == "__main__":
    main()
