"""``attnx verify``: read every chunk of a store's snapshot and check every invariant.

Opening the store already checks the attributes, each array's dtype, shape and chunk count against the
commit, and the per-record offsets (:mod:`attnx.store.validate`); verify then decodes every chunk (Icechunk
fails on a missing or truncated object, the crc32c codec on a changed byte), checks the input index is a
permutation, token ids and segments, CoNLL-U heads and relations, and that every stored attention row is a
probability distribution within the stored dtype's error. The first failure raises a one-line StoreError.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from attnx.errors import StoreError
from attnx.store.block import AttentionBlock
from attnx.store.layout import STORED_DTYPES
from attnx.store.location import StoreLocation, _first_line
from attnx.store.reader import AttentionStore


@dataclass
class VerifyReport:
    path: str
    snapshot: str
    complete: bool
    records: int
    tokens: int
    payload_elements: int
    chunks_read: dict[str, int] = field(default_factory=dict)
    max_row_sum_error: float = 0.0
    seconds: float = 0.0
    checks: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def row_sum_tolerance(dtype: str, length: np.ndarray) -> np.ndarray:
    """Largest |sum_j P[i, j] - 1| the stored dtype allows for rows of ``length`` keys (fp32 softmax: 1e-5)."""
    bound = STORED_DTYPES[dtype]
    if bound.scale != 1.0:  # rounding to a grid: each element off by at most the bound
        return length * bound.max_abs_error + 1e-5
    return np.full(len(length), 2 * bound.max_abs_error + 1e-5)


def _check_maps(block: AttentionBlock, dtype: str, path: str) -> float:
    """Every row of every map in the block sums to 1 within the dtype's error, values in [0, 1]."""
    values = block.maps_f32()
    lengths = block.lengths.astype(np.int64)
    rows_per_record = block.n_layers * block.n_heads * lengths
    row_len = np.repeat(lengths, rows_per_record)
    if not len(row_len):
        return 0.0
    starts = np.concatenate([[0], np.cumsum(row_len)[:-1]])
    sums = np.add.reduceat(values.astype(np.float64), starts)
    err = np.abs(sums - 1.0)
    bad = ~(err <= row_sum_tolerance(dtype, row_len))  # NaN counts as bad
    lo_bad = values.min() < 0 or not np.isfinite(values).all()
    if bad.any() or lo_bad:
        row = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        k = int(np.searchsorted(np.cumsum(rows_per_record), row, side="right"))
        raise StoreError(
            f"{path}: attention of record {int(block.record_ids[k])} is not a probability distribution "
            f"(a row sums to {sums[row]:.6f})"
        )
    return float(err.max())


def _check_words(block: AttentionBlock, n_deprels: int, path: str) -> None:
    counts = np.diff(block.word_offsets)
    owner = np.repeat(np.arange(len(counts)), counts)
    bad = (block.word_head < -1) | (block.word_head >= counts[owner]) | (block.word_deprel < 0)
    bad |= block.word_deprel >= n_deprels
    if bad.any():
        k = int(owner[np.flatnonzero(bad)[0]])
        raise StoreError(f"{path}: words/head or words/deprel of record {int(block.record_ids[k])} is out of range")


def verify_store(
    where: str | os.PathLike | StoreLocation,
    block_bytes: int = 64 << 20,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check a store's newest snapshot completely; raise :class:`StoreError` at the first failure.

    ``progress(records)`` is called after each block with the records checked so far.
    """
    t0 = time.perf_counter()
    store = AttentionStore(where)  # attributes, metadata, chunk counts, record offsets
    report = VerifyReport(
        path=store.path,
        snapshot=store.snapshot_id,
        complete=store.complete,
        records=len(store),
        tokens=store.commit.tokens,
        payload_elements=store.commit.attn,
    )
    report.checks += ["attributes", "array dtypes, shapes and chunk counts", "record offsets and lengths"]
    _ = store.position
    _ = store.vocab
    if "vocab_sha256" in store.attrs:
        report.checks.append("vocabulary sha256")
    if store.complete:
        report.checks.append("input index is a permutation")
    done = 0
    for block in store.blocks(max_bytes=block_bytes, reuse=True):
        if store.payload == "maps":
            report.max_row_sum_error = max(report.max_row_sum_error, _check_maps(block, store.dtype, store.path))
        elif not np.isfinite(block.attn).all():
            raise StoreError(f"{store.path}: features of records {int(block.record_ids[0])}.. are not finite")
        if store.attrs.get("conllu"):
            _check_words(block, len(store.deprels), store.path)
        done += len(block)
        if progress:
            progress(done)
    report.checks += ["every payload, token and word chunk decodes (crc32c)", "token ids and segments"]
    if store.payload == "maps":
        report.checks.append("every attention row is a distribution within the dtype's error")
    for name in store.derived_names():
        for part in ("offsets", "values"):
            array = store.group[f"derived/{name}/{part}"]
            try:
                np.asarray(array[:])
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"{store.path}: cannot read derived/{name}/{part}: {_first_line(exc)}") from None
        report.checks.append(f"derived/{name}")
    for name, array in store._arrays.items():
        report.chunks_read[name] = -(-array.shape[0] // int(array.chunks[0])) if array.shape[0] else 0
    report.seconds = time.perf_counter() - t0
    return report
