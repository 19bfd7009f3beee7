"""The engine loop shared by a single-process run and a worker's shard: schedule -> execute -> process.

Schedule plans a tokenized window's length-sorted batches; execute hands each batch to the backend
(``backend.submit``); process turns a finished batch, with its records' tokens, into a :class:`StoredBatch`
for the sink (the store writer, or a shard's region writer). ``queue_depth`` batches are in flight, so batch
k+1 computes while batch k is copied and written.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from attnx.engine.backends.base import PackedBatch, collate
from attnx.engine.batching import BatchPlan
from attnx.engine.tokenize import TokenizedWindow
from attnx.errors import InputError
from attnx.memory import heap_trimmer
from attnx.store import StoredBatch, record_sizes


@dataclass(frozen=True)
class InFlight:
    """A batch submitted to the backend and not yet handed to the sink."""

    window: TokenizedWindow
    idx: np.ndarray  # (b,) window-local record indices, physical order
    pending: object  # the backend's handle: .result() -> PackedBatch
    keep_from: int  # records at the front already committed before a resume: not written again


@dataclass
class RunTotals:
    """What a run has handed to its sink so far."""

    records: int = 0
    tokens: int = 0
    attention_bytes: int = 0  # stored payload produced (before compression)
    truncated: int = 0
    batches: int = 0

    def add(self, stored: StoredBatch) -> None:
        self.records += len(stored.input_id)
        self.tokens += int(stored.length.sum())
        self.attention_bytes += stored.attn.nbytes
        self.truncated += int(stored.truncated.sum())


@dataclass(frozen=True)
class LoopSettings:
    """How the loop cuts and packs batches; the same for every window of a run."""

    plan: Callable[[np.ndarray], BatchPlan]  # (n,) lengths -> the window's batches
    pad_id: int
    n_lh: int  # kept layers x kept heads
    n_features: int | None  # --stats-only: features per map; None: the maps themselves
    queue_depth: int


def stored_batch(
    window: TokenizedWindow,
    idx: np.ndarray,
    packed: PackedBatch,
    keep_from: int,
    n_lh: int,
    n_features: int | None = None,
) -> StoredBatch:
    """The writer's view of records ``idx`` (window-local, physical order), dropping the first ``keep_from``."""
    if keep_from:
        offsets = np.concatenate([[0], np.cumsum(record_sizes(packed.lengths, n_lh, 1, n_features))])
        attn = packed.attn[offsets[keep_from] :]
        idx = idx[keep_from:]
    else:
        attn = packed.attn
    starts = window.offsets[idx]
    lens = window.offsets[idx + 1] - starts
    src = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(int(lens.sum()))
    tokens = {
        "ids": window.ids[src],
        "segment": window.segment[src],
        "special": window.special[src],
        "punct": window.punct[src],
        "word": window.word[src],
    }
    words = word_count = None
    if window.word_offsets is not None:
        w0 = window.word_offsets[idx]
        word_count = window.word_offsets[idx + 1] - w0
        wsrc = np.repeat(w0 - np.concatenate([[0], np.cumsum(word_count)[:-1]]), word_count) + np.arange(
            int(word_count.sum())
        )
        words = {"head": window.word_head[wsrc], "deprel": window.word_deprel[wsrc]}
    return StoredBatch(
        input_window=window.index,
        input_digest=window.input_digest,
        attn=attn,
        input_id=window.first_id + idx,
        length=window.length[idx],
        len_a=window.len_a[idx],
        line=window.line[idx],
        truncated=window.truncated[idx],
        tokens=tokens,
        words=words,
        word_count=word_count,
    )


def run_windows(
    windows: Iterable[TokenizedWindow],
    backend: object,
    sink: Callable[[StoredBatch], None],
    settings: LoopSettings,
    skip_in_first: int = 0,
    on_batch: Callable[[RunTotals], None] | None = None,
) -> RunTotals:
    """Run every window through ``backend`` and hand each finished batch to ``sink``, in physical order.

    ``skip_in_first``: records at the front of the first window's physical order that a resumed store holds
    already (computed again where they share a batch, never handed on). On bad input further on, the batches
    already submitted are still handed to the sink before the error propagates.
    """
    totals = RunTotals()
    in_flight: collections.deque[InFlight] = collections.deque()
    trim = heap_trimmer()
    s = settings
    stats_only = s.n_features is not None

    def process(item: InFlight) -> None:
        stored = stored_batch(item.window, item.idx, item.pending.result(), item.keep_from, s.n_lh, s.n_features)
        sink(stored)
        totals.add(stored)
        trim()
        if on_batch:
            on_batch(totals)

    try:
        for w, window in enumerate(windows):
            plan = s.plan(window.length)
            done_here = skip_in_first if w == 0 else 0
            for j in range(len(plan)):
                lo, hi = int(plan.bounds[j]), int(plan.bounds[j + 1])
                if hi <= done_here:
                    continue  # committed before the interruption
                idx = plan.batch(j)
                batch = collate(
                    window.ids,
                    window.offsets,
                    window.segment,
                    idx,
                    s.pad_id,
                    *((window.special, window.punct, window.len_a) if stats_only else ()),
                )
                in_flight.append(InFlight(window, idx, backend.submit(batch), max(0, done_here - lo)))
                totals.batches += 1
                while len(in_flight) >= s.queue_depth:
                    process(in_flight.popleft())
        while in_flight:
            process(in_flight.popleft())
    except InputError as exc:
        try:
            while in_flight:
                process(in_flight.popleft())
        except Exception as during:  # noqa: BLE001 - reported with the original error, never dropped
            exc.add_note(f"while stopping: {during}")
        raise
    return totals
