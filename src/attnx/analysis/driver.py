"""The analysis driver: the rules of a run over one store, then one streaming pass (here or on Dask workers).

:func:`attnx.analysis.dispatch.analyze_store` is the one entry point of ``attnx analyze`` and the Python API:
:func:`plan_analysis` applies every rule once (what the store can give, the sample, the JS subset, the
warnings), then :func:`stream_partial` runs the kernels over the planned records block by block in this
process, or :mod:`attnx.scaleout.analyze` cuts them into tasks whose workers run the same
:func:`stream_partial`. The result writers are in :mod:`attnx.analysis.outputs`.

Memory is bounded by the block size (``max_bytes`` of stored attention, read ahead on another thread by
:meth:`attnx.store.AttentionStore.blocks`) plus the per-record pattern labels, which go to a memory-mapped
``.npy`` file rather than RAM. Nothing grows with the corpus except that file.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from attnx.analysis.blocks import block_input
from attnx.analysis.partial import Partial
from attnx.config import BLOCK_BYTES
from attnx.errors import AttnxError, AttnxWarning, StoreError
from attnx.kernels.features import map_features, map_features_checked
from attnx.kernels.names import MAP_FEATURES, F
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


def _kernel_args(block: AttentionBlock, n_layers: int, n_heads: int) -> tuple:
    """The feature kernel's arguments for ``block``."""
    return (
        block_input(block),
        block.attn_offsets,
        block.lengths,
        block.len_a,
        block.tok_offsets,
        block.special,
        block.punct,
        n_layers,
        n_heads,
    )


def block_maps(block: AttentionBlock, n_layers: int, n_heads: int) -> np.ndarray:
    """Row-sum features ``(b, L, H, NF)`` of a block (the numba kernel)."""
    return map_features(*_kernel_args(block, n_layers, n_heads))


def block_maps_checked(block: AttentionBlock, store: AttentionStore) -> np.ndarray:
    """:func:`block_maps` of a block read with ``check_maps=False``, checking its maps' values on the way (the
    feature kernel flags bad rows; :func:`attnx.store.checks.raise_flagged_map` raises the reader's error)."""
    from attnx.store.checks import map_limits, raise_flagged_map

    args = _kernel_args(block, store.n_layers, store.n_heads)
    sums, flags = map_features_checked(*args, *map_limits(store.dtype))
    raise_flagged_map(block, flags, store.path)
    return sums


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


def as_store(store: AttentionStore | str | Path) -> AttentionStore:
    """``store`` itself, or the store at that path opened."""
    return store if isinstance(store, AttentionStore) else open_store(store)


def require_maps(store: AttentionStore, what: str) -> None:
    """Refuse a --stats-only store (it holds per-head feature sums, no maps) for ``what``, in one line."""
    if store.payload != "maps":
        raise StoreError(
            f"{store.path}: a --stats-only store holds per-head features, not the maps {what} needs; "
            "extract the corpus again without --stats-only"
        )


def sample_records(store: AttentionStore, n: int | None, seed: int) -> np.ndarray | None:
    """Sorted input ids of a seeded random subset of ``n`` stored records; None for all of them."""
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
    probs = np.lib.format.open_memmap(
        Path(labels_path).with_name("pattern_probs.npy"), mode=mode, dtype=np.float16, shape=(n, L, H)
    )
    if create:
        labels[:] = -1
        probs[:] = np.nan
    return labels, probs


@dataclass(frozen=True)
class AnalysisPlan:
    """What one run over a store computes, decided once by :func:`plan_analysis` (a distributed run's
    workers each get it with their own ``records``)."""

    params: AnalyzeParams  # ``only`` narrowed to what the store can give
    records: np.ndarray | None  # input ids to analyse (sorted); None: every stored record
    js_keep: np.ndarray | None  # (N,) bool: the records JS similarity runs on; None: all of ``records``
    stats_only: bool  # the store holds per-map feature sums, not maps

    @property
    def do_features(self) -> bool:
        return bool({"features", "patterns"} & set(self.params.only)) or self.params.per_record

    @property
    def do_relations(self) -> bool:
        return "relations" in self.params.only

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.params.metrics if "similarity" in self.params.only else ()


def _warn(message: str) -> None:
    warnings.warn(message, AttnxWarning, stacklevel=3)


def supported_analyses(store: AttentionStore, only: tuple[str, ...], warn: bool = True) -> tuple[str, ...]:
    """``only`` less what ``store`` cannot give, or an error when nothing asked for is left.

    Relations need a CoNLL-U store: asked for alone they are an error; with other analyses they are skipped,
    with a warning unless ``only`` is the default (every analysis). A --stats-only store gives features and
    patterns only (an error when neither is asked for)."""
    unknown = set(only) - set(ANALYSES)
    if unknown:
        raise AttnxError(f"unknown analyses {sorted(unknown)} (choose from {', '.join(ANALYSES)})")
    if "relations" in only and not store.attrs.get("conllu"):
        fmt = (store.attrs.get("options") or {}).get("format")
        if tuple(only) == ("relations",):
            raise AttnxError(
                f"{store.path}: relations need a CoNLL-U store (word heads and relations); this store "
                f"was extracted from {fmt} input"
            )
        if warn and set(only) != set(ANALYSES):
            _warn(f"{store.path}: relations skipped - they need a CoNLL-U store (this one is {fmt})")
        only = tuple(a for a in only if a != "relations")
    if getattr(store, "payload", "maps") == "features":
        need_maps = [a for a in only if a in ("similarity", "relations")]
        if need_maps and not set(only) & {"features", "patterns"}:
            raise AttnxError(
                f"{store.path}: a --stats-only store holds per-map features, not maps: "
                f"{', '.join(need_maps)} need the maps (re-extract without --stats-only)"
            )
        only = tuple(a for a in only if a in ("features", "patterns"))
    return only


def plan_analysis(
    store: AttentionStore,
    params: AnalyzeParams,
    records: np.ndarray | None = None,
    js_keep: np.ndarray | None = None,
) -> AnalysisPlan:
    """Every rule of an analysis run, applied once: a store of 0 records and analyses the store cannot give
    are refused, relations on a store without CoNLL-U are skipped (see :func:`supported_analyses`), and
    quantised or truncated stores are warned about (:class:`~attnx.errors.AttnxWarning`). Then the records
    (``records``, else ``params.sample``) and the JS subset are drawn."""
    if len(store) == 0:
        raise AttnxError(f"{store.path}: the store holds 0 records; nothing to analyse (was its input empty?)")
    only = supported_analyses(store, tuple(params.only))
    PatternModel.load(params.pattern_model)  # a bad file fails here, before any work
    from attnx.analysis.quantisation_warnings import quantisation_warnings

    for line in quantisation_warnings(store, only, params.metrics):
        _warn(line)
    truncated = int(np.count_nonzero(store.truncated)) if hasattr(store, "truncated") else 0
    if truncated:
        _warn(
            f"{store.path}: {truncated:,} of {len(store):,} records were cut to --max-length at extraction; "
            "their maps cover the kept wordpieces only"
        )
    params = replace(params, only=only)
    if records is None:
        records = sample_records(store, params.sample, params.seed)
    else:
        records = np.unique(np.asarray(records, np.int64))
    if js_keep is None and "similarity" in only and "js" in params.metrics:
        js_keep = js_subset(store, records, params)
    stats_only = getattr(store, "payload", "maps") == "features"
    return AnalysisPlan(params, records, js_keep, stats_only)


@keeps_thread_settings
def stream_partial(
    store: AttentionStore,
    plan: AnalysisPlan,
    labels_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Partial:
    """The streaming pass over ``plan.records`` of ``store``: every planned kernel per block, summed into a
    :class:`Partial`; per-record labels written into the (existing) files at ``labels_path``."""
    params = plan.params
    L, H = store.n_layers, store.n_heads
    M = L * H
    model = PatternModel.load(params.pattern_model)
    metrics, do_rel, js_keep = plan.metrics, plan.do_relations, plan.js_keep
    n_rel = len(store.deprels)
    labels = None
    if params.per_record:
        labels, probs = open_labels(labels_path, len(store.position), L, H, create=False)
    part = Partial(L, H)
    trim = heap_trimmer(every_bytes=TRIM_EVERY_BYTES)
    progress_bytes = 0
    # the feature kernel checks the maps' values as it decodes them: no separate check pass over every block
    fused_check = plan.do_features and not plan.stats_only
    for block in store.blocks(params.max_bytes, records=plan.records, reuse=True, check_maps=not fused_check):
        b = len(block)
        part.records += b
        part.rows += float(block.lengths.sum())
        part.attn_bytes += int(block.attn.nbytes)
        if plan.do_features:
            sums = stored_sums(block, store) if plan.stats_only else block_maps_checked(block, store)
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
            part.add_relations(
                *relation_counts(
                    inp,
                    block.attn_offsets,
                    block.lengths,
                    block.tok_offsets,
                    block.special,
                    block.word,
                    block.word_head,
                    block.word_deprel,
                    block.word_offsets,
                    M,
                    n_rel,
                    params.max_offset,
                )
            )
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
