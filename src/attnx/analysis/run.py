"""Streaming drivers: run the kernels over a store block by block, merge partials, write the results.

Longer than most modules: the one streaming pass (analyze_store) and the writing of every result file from its
partial belong together, so that each output column can be traced to the sum it comes from in one file.

Memory is bounded by the block size (``max_bytes`` of stored attention, read ahead on another thread by
:meth:`attnx.store.AttentionStore.blocks`) plus the per-record pattern labels, which go to a memory-mapped
``.npy`` file rather than RAM. Nothing grows with the corpus except that file.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from attnx._version import __version__
from attnx.analysis.blocks import block_input
from attnx.analysis.cluster import cluster_heads
from attnx.analysis.partial import Partial
from attnx.config import BLOCK_BYTES
from attnx.errors import AttnxError, StoreError
from attnx.kernels.features import map_features
from attnx.kernels.names import FEATURE_COLUMNS, MAP_FEATURES, PATTERNS, F
from attnx.kernels.pattern_model import Labels, PatternModel, classify_sums
from attnx.kernels.patterns import pattern_counts
from attnx.kernels.relations import MAX_OFFSET, relation_counts
from attnx.kernels.similarity import METRICS, head_similarity
from attnx.memory import heap_trimmer
from attnx.store import AttentionBlock, AttentionStore, open_store
from attnx.threads import keeps_thread_settings

ANALYSES = ("features", "patterns", "similarity", "relations")
TRIM_EVERY_BYTES = 512 << 20  # return freed heap pages to the OS after this much attention (see heap_trimmer)


@dataclass(frozen=True)
class AnalyzeParams:
    """Everything that determines an analysis result; written to ``params.json`` beside it."""

    only: tuple[str, ...] = ANALYSES
    metrics: tuple[str, ...] = METRICS
    sample: int | None = None  # analyse a seeded random subset of this many records
    seed: int = 0
    js_records: int = 5000  # JS similarity: at most this many records (seeded subset of the analysed ones)
    max_bytes: int = BLOCK_BYTES  # stored attention per block
    per_record: bool = False
    max_offset: int = MAX_OFFSET
    pattern_model: str | None = None  # pattern-classifier JSON (None: the packaged attnx/data/pattern_model.json)

    def to_json(self) -> dict:
        d = asdict(self)
        d["only"], d["metrics"] = list(self.only), list(self.metrics)
        return d


def record_shape_info(block: AttentionBlock) -> tuple[np.ndarray, np.ndarray]:
    """Per record of a block: ``len_a`` capped at ``l`` and the number of stripe columns
    ([CLS], [SEP]s, punctuation) used by the pattern classifier; both (b,) int64."""
    l = block.lengths.astype(np.int64)
    la = np.minimum(block.len_a.astype(np.int64), l)
    stripe = (block.special | block.punct).astype(np.int64)
    n_stripe = np.add.reduceat(stripe, block.tok_offsets[:-1]) if len(l) else np.zeros(0, np.int64)
    return la, n_stripe


def block_maps(block: AttentionBlock, n_layers: int, n_heads: int) -> np.ndarray:
    """Row-sum features ``(b, L, H, NF)`` of a block (the numba kernel)."""
    return map_features(block_input(block), block.attn_offsets, block.lengths, block.len_a, block.tok_offsets,
                        block.special, block.punct, n_layers, n_heads)


def stored_sums(block: AttentionBlock, store: AttentionStore) -> np.ndarray:
    """--stats-only stores: the block's precomputed row sums as ``(b, L, H, NF)`` float64 in
    :data:`attnx.kernels.features.MAP_FEATURES` order (matched by name; a missing feature is an error)."""
    names = list(store.features)
    missing = [f for f in MAP_FEATURES if f not in names]
    if missing:
        raise StoreError(f"{store.path}: --stats-only store lacks features {missing}; re-extract it with this attnx")
    flat = block.attn.reshape(len(block), store.n_layers, store.n_heads, len(names)).astype(np.float64)
    return flat[..., [names.index(f) for f in MAP_FEATURES]]


def block_patterns(sums: np.ndarray, block: AttentionBlock, model: PatternModel | None = None) -> Labels:
    """Pattern labels ``(b, L, H)`` (code, probability, margin) from the block's row-sum features."""
    la, n_stripe = record_shape_info(block)
    return classify_sums(sums, block.lengths, la, n_stripe, model)




def _sample(store: AttentionStore, n: int | None, seed: int) -> np.ndarray | None:
    if n is None or n >= len(store):
        return None
    stored = np.flatnonzero(store.position >= 0)
    return np.sort(np.random.default_rng(seed).choice(stored, size=n, replace=False))


def js_subset(store: AttentionStore, records: np.ndarray | None, params: AnalyzeParams) -> np.ndarray | None:
    """(N,) bool over input ids: the seeded records JS similarity runs on (JS costs ~20x cosine), or None
    for all of ``records`` (all stored records when None). One draw for the whole store, so that a run
    split over processes uses the records a single process would."""
    pool = records if records is not None else np.flatnonzero(store.position >= 0)
    if len(pool) <= params.js_records:
        return None
    keep = np.zeros(len(store.position), bool)
    keep[np.random.default_rng(params.seed + 1).choice(pool, params.js_records, replace=False)] = True
    return keep


def open_labels(labels_path: str | Path, n: int, L: int, H: int, create: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-record pattern codes ``(N, L, H)`` int8 (-1 = not analysed) and probabilities (float16, NaN), as
    memory maps; ``create`` makes them (one process), else they are opened to fill in (the workers of a run)."""
    mode = "w+" if create else "r+"
    labels = np.lib.format.open_memmap(labels_path, mode=mode, dtype=np.int8, shape=(n, L, H))
    probs = np.lib.format.open_memmap(Path(labels_path).with_name("pattern_probs.npy"), mode=mode,
                                      dtype=np.float16, shape=(n, L, H))
    if create:
        labels[:] = -1
        probs[:] = np.nan
    return labels, probs


@keeps_thread_settings
def analyze_store(
    store: AttentionStore | str | Path,
    params: AnalyzeParams | None = None,
    labels_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    records: np.ndarray | None = None,
    js_keep: np.ndarray | None = None,
    create_labels: bool = True,
) -> Partial:
    """Run the requested analyses over ``store`` (or a ``--sample``), streaming; returns the merged partial.

    ``records``: input-order ids to analyse instead (e.g. one shard per process or machine; merge the
    returned partials with :meth:`Partial.merge`). Overrides ``params.sample``. Such a split run passes the
    whole run's ``js_keep`` (:func:`js_subset`, all True where it is None) and ``create_labels=False`` (the
    label files are made once, by its coordinator).

    ``labels_path``: where to write per-record pattern codes (``(N, L, H)`` int8 ``.npy``, -1 = not analysed;
    N = input records) when ``params.per_record``; the probability of each label goes beside it to
    ``pattern_probs.npy`` (``(N, L, H)`` float16, NaN = not analysed). ``progress(records, bytes)`` is called
    after each block.
    """
    params = params or AnalyzeParams()
    if not isinstance(store, AttentionStore):
        store = open_store(store)
    L, H = store.n_layers, store.n_heads
    M = L * H
    unknown = set(params.only) - set(ANALYSES)
    if unknown:
        raise AttnxError(f"unknown analyses {sorted(unknown)} (choose from {', '.join(ANALYSES)})")
    model = PatternModel.load(params.pattern_model)
    stats_only = getattr(store, "payload", "maps") == "features"
    if stats_only:
        need_maps = [a for a in params.only if a in ("similarity", "relations")]
        if need_maps and not set(params.only) & {"features", "patterns"}:
            raise AttnxError(f"{store.path}: a --stats-only store holds per-map features, not maps: "
                             f"{', '.join(need_maps)} need the maps (re-extract without --stats-only)")
        params = replace(params, only=tuple(a for a in params.only if a in ("features", "patterns")))
    do_feat = "features" in params.only or "patterns" in params.only or params.per_record
    do_rel = "relations" in params.only and bool(store.attrs.get("conllu"))
    metrics = params.metrics if "similarity" in params.only else ()
    n_rel = len(store.deprels)
    if records is None:
        records = _sample(store, params.sample, params.seed)
    else:
        records = np.unique(np.asarray(records, np.int64))
    if "js" in metrics and js_keep is None:
        js_keep = js_subset(store, records, params)
    labels = None
    if params.per_record:
        if labels_path is None:
            raise AttnxError("per-record labels need an output path")
        labels, probs = open_labels(labels_path, len(store.position), L, H, create_labels)
    part = Partial(L, H)
    trim = heap_trimmer(every_bytes=TRIM_EVERY_BYTES)
    progress_bytes = 0
    for block in store.blocks(params.max_bytes, records=records, reuse=True):
        b = len(block)
        part.records += b
        part.rows += float(block.lengths.sum())
        part.attn_bytes += int(block.attn.nbytes)
        if do_feat:
            sums = stored_sums(block, store) if stats_only else block_maps(block, L, H)
            pair = block.len_a < block.lengths
            own = sums[..., F["own_segment"]]
            totals = sums.sum(axis=0)
            totals[..., F["own_segment"]] = own[pair].sum(axis=0)
            part.feature_sums += totals
            part.pair_rows += float(block.lengths[pair].sum())
            if "patterns" in params.only or labels is not None:
                lab = block_patterns(sums, block, model)
                part.pattern_counts += pattern_counts(lab.codes)
                part.pattern_uncertain += (lab.prob < model.uncertain_below).sum(axis=0)
                part.pattern_prob_sum += lab.prob.sum(axis=0, dtype=np.float64)
                if labels is not None:
                    labels[block.record_ids] = lab.codes
                    probs[block.record_ids] = lab.prob
        inp = block_input(block) if (metrics or do_rel) else None
        for metric in metrics:
            if metric == "js" and js_keep is not None:
                sel = np.flatnonzero(js_keep[block.record_ids])
                if len(sel) == 0:
                    continue
                offs = block.attn_offsets[sel]
                acc, count = head_similarity(inp, np.append(offs, 0), block.lengths[sel], M, metric)
            else:
                acc, count = head_similarity(inp, block.attn_offsets, block.lengths, M, metric)
            part.add_similarity(metric, acc, count)
        if do_rel:
            part.add_relations(*relation_counts(
                inp, block.attn_offsets, block.lengths, block.tok_offsets, block.special, block.word,
                block.word_head, block.word_deprel, block.word_offsets, M, n_rel, params.max_offset))
        nbytes = int(block.attn.nbytes)
        block = inp = sums = own = totals = lab = None  # drop this block's arrays before trimming
        trim(nbytes)
        if progress is not None:
            progress(b, part.attn_bytes - progress_bytes)
        progress_bytes = part.attn_bytes
    if labels is not None:
        labels.flush()
        probs.flush()
    return part


# ----------------------------------------------------------------------------------------------------------
# Results: means from sums, written as CSV / NPY with params.json
# ----------------------------------------------------------------------------------------------------------
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
        rows.append({"relation": deprels[r], "count": n, "best_layer": best // n_heads, "best_head": best % n_heads,
                     "accuracy": float(acc[best]), "best_offset": int(offsets[bo]),
                     "offset_accuracy": float(off_acc[bo])})
    return rows


def _write_grid_csv(path: Path, layers: list[int], heads: list[int], columns: dict[str, np.ndarray]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "head", *columns])
        for a, layer in enumerate(layers):
            for h, head in enumerate(heads):
                w.writerow([layer, head, *(f"{float(v[a, h]):.8g}" for v in columns.values())])


def write_results(part: Partial, out_dir: str | Path, store: AttentionStore | str | Path,
                  params: AnalyzeParams | None = None, elapsed_s: float | None = None) -> list[Path]:
    """Write every result ``part`` holds into ``out_dir`` (the files of ``attnx analyze``); returns them.

    ``store``: the analysed store (path or open store; it names layers, heads and relations). ``params``:
    what was run (default: whatever ``part`` holds: features and patterns when it has feature sums,
    similarity for its metrics, relations when it has relation counts)."""
    store = _as_store(store)
    if params is None:
        held = (("features", "patterns") if part.rows and np.any(part.feature_sums) else ()) + \
            (("similarity",) if part.sim_sum else ()) + (("relations",) if part.rel_count is not None else ())
        params = AnalyzeParams(only=held, metrics=tuple(part.sim_sum) or METRICS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    layers, heads = store.layers, store.heads
    if "features" in params.only:
        _write_grid_csv(out / "features.csv", layers, heads, feature_means(part))
        written.append(out / "features.csv")
    if "patterns" in params.only:
        prop = pattern_proportions(part)
        _write_grid_csv(out / "patterns.csv", layers, heads,
                        {**{p: prop[..., k] for k, p in enumerate(PATTERNS)}, **pattern_uncertainty(part)})
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
                w.writerow([layers[k // len(heads)], heads[k % len(heads)], int(rank[k]), int(cl.labels[k]),
                            f"{cl.mds[k, 0]:.6g}", f"{cl.mds[k, 1]:.6g}"])
        np.save(out / f"head_linkage_{metric}.npy", cl.linkage)
        written += [out / f"head_clusters_{metric}.csv", out / f"head_linkage_{metric}.npy"]
    if part.rel_count is not None:
        rows = relation_table(part, store.deprels, len(heads), params.max_offset)
        with open(out / "relations.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["relation", "count", "best_layer", "best_head", "accuracy",
                                               "best_offset", "offset_accuracy"])
            w.writeheader()
            for row in rows:
                w.writerow({**row, "best_layer": layers[row["best_layer"]], "best_head": heads[row["best_head"]],
                            "accuracy": f"{row['accuracy']:.6g}", "offset_accuracy": f"{row['offset_accuracy']:.6g}"})
        np.save(out / "relations_accuracy.npy",
                part.rel_correct.reshape(-1, len(layers), len(heads)) / np.maximum(part.rel_count, 1)[:, None, None])
        written += [out / "relations.csv", out / "relations_accuracy.npy"]
    part.save(out / "partial.npz")
    meta = {
        "params": params.to_json(),
        "pattern_model": {"source": (m := PatternModel.load(params.pattern_model)).source, "sha256_16": m.digest,
                          "uncertain_below": m.uncertain_below, **m.info.get("training", {})},
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


# ----------------------------------------------------------------------------------------------------------
# Cross-store comparison
# ----------------------------------------------------------------------------------------------------------
def require_maps(store: AttentionStore, what: str) -> None:
    """Refuse a --stats-only store (it holds per-head feature sums, no maps) for ``what``, in one line."""
    if store.payload != "maps":
        raise StoreError(f"{store.path}: a --stats-only store holds per-head features, not the maps {what} needs; "
                         "extract the corpus again without --stats-only")


def _check_aligned(a: AttentionStore, b: AttentionStore) -> None:
    if (a.layers, a.heads) != (b.layers, b.heads):
        raise StoreError(f"{b.path}: layers/heads {b.layers}/{b.heads} differ from {a.path}: {a.layers}/{a.heads}")
    if len(a.position) != len(b.position) or not np.array_equal(a.position >= 0, b.position >= 0):
        raise StoreError(f"{a.path} and {b.path} do not hold the same records ({len(a)} vs {len(b)} stored): "
                         "compare stores extracted from the same input")
    if not np.array_equal(a.lengths, b.lengths):
        k = int(np.flatnonzero(a.lengths != b.lengths)[0])
        raise StoreError(f"{a.path} and {b.path} tokenize record {k} differently "
                         f"({a.lengths[k]} vs {b.lengths[k]} wordpieces): same corpus and tokenizer needed")


def _as_store(store: AttentionStore | str | Path) -> AttentionStore:
    return store if isinstance(store, AttentionStore) else open_store(store)


@keeps_thread_settings
def compare_stores(path_a: AttentionStore | str | Path, path_b: AttentionStore | str | Path,
                   max_bytes: int = BLOCK_BYTES,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Per head ``(L, H)``: mean over records of cosine(map in A, map in B) and max |A - B| (Kovaleva §5).
    Each store is a path or an open store.

    Raises :class:`StoreError` when the stores do not hold the same records with the same tokenization.
    """
    from attnx.kernels.common import kernel_input
    from attnx.kernels.compare import compare_maps

    a, b = _as_store(path_a), _as_store(path_b)
    for store in (a, b):
        require_maps(store, "compare")
    _check_aligned(a, b)
    L, H = a.n_layers, a.n_heads
    M = L * H
    cos = np.zeros(M)
    mad = np.zeros(M)
    n = 0
    for blk in a.blocks(max_bytes):
        pb = b.position[blk.record_ids]
        if len(pb) and np.array_equal(pb, pb[0] + np.arange(len(pb))):
            other = b.read_block(int(pb[0]), int(pb[-1]) + 1)
            if not np.array_equal(other.token_ids, blk.token_ids):
                raise StoreError(f"{a.path} and {b.path}: token ids differ for records {blk.record_ids[:3]}...")
            ib, offs_b = block_input(other), other.attn_offsets[:-1]
        else:  # physical orders differ: gather B's records one by one (correct, slower)
            maps = [b.attention(int(i)).reshape(-1) for i in blk.record_ids]
            for k, i in enumerate(blk.record_ids):
                t0, t1 = blk.tok_offsets[k], blk.tok_offsets[k + 1]
                if not np.array_equal(b.token_ids(int(i)), blk.token_ids[t0:t1]):
                    raise StoreError(f"{a.path} and {b.path}: token ids differ for record {int(i)}")
            flat = np.concatenate(maps)
            ib, offs_b = kernel_input(flat), np.concatenate([[0], np.cumsum([len(m) for m in maps])[:-1]])
        c, d = compare_maps(block_input(blk), blk.attn_offsets[:-1], ib, offs_b, blk.lengths, M)
        cos += c
        mad = np.maximum(mad, d)
        n += len(blk)
        if progress is not None:
            progress(len(blk), int(blk.attn.nbytes))
    return {"cosine": (cos / max(n, 1)).reshape(L, H), "max_abs_diff": mad.reshape(L, H), "records": n,
            "layers": a.layers, "heads": a.heads}


def write_compare(result: dict, out_dir: str | Path, path_a: str | Path, path_b: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_grid_csv(out / "compare.csv", result["layers"], result["heads"],
                    {"cosine": result["cosine"], "max_abs_diff": result["max_abs_diff"]})
    about = {}
    for key, store in (("a", path_a), ("b", path_b)):
        st = _as_store(store)
        about[f"model_{key}"] = (st.attrs.get("model") or {}).get("name")
        about[f"input_{key}"] = (st.attrs.get("input") or {}).get("path")
        about[f"dtype_{key}"] = st.dtype
    (out / "compare_params.json").write_text(json.dumps(
        {"store_a": str(getattr(path_a, "path", path_a)), "store_b": str(getattr(path_b, "path", path_b)),
         "records": result["records"], **about, "attnx_version": __version__}, indent=2))
    return [out / "compare.csv", out / "compare_params.json"]

