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

from attnx.config import BLOCK_BYTES
from attnx.errors import StoreError
from attnx.store import validate
from attnx.store.block import AttentionBlock
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


def _max_row_sum_error(block: AttentionBlock) -> float:
    """Largest |row sum - 1| of the block's maps (the reader has already refused any row outside the bound)."""
    values = block.maps_f32()
    lengths = block.lengths.astype(np.int64)
    row_len = np.repeat(lengths, block.n_layers * block.n_heads * lengths)
    if not len(row_len):
        return 0.0
    starts = np.concatenate([[0], np.cumsum(row_len)[:-1]])
    return float(np.abs(np.add.reduceat(values.astype(np.float64), starts) - 1.0).max())


def verify_store(
    where: str | os.PathLike | StoreLocation,
    block_bytes: int = BLOCK_BYTES,
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
    for block in store.blocks(max_bytes=block_bytes, reuse=True):  # the reader checks every value it decodes
        if store.payload == "maps":
            report.max_row_sum_error = max(report.max_row_sum_error, _max_row_sum_error(block))
        done += len(block)
        if progress:
            progress(done)
    report.checks += ["every payload, token and word chunk decodes (crc32c)", "token ids, segments and word ids"]
    if store.attrs.get("conllu"):
        report.checks.append("word heads and relations")
    if store.payload == "maps":
        report.checks.append("every attention row is a distribution within the dtype's error")
    store.history()  # every snapshot back to the first: a deleted or damaged older one is a StoreError
    report.checks.append("the commit history reads back to the first snapshot")
    for name in store.derived_names():
        for part in ("offsets", "values"):
            array = store.group[f"derived/{name}/{part}"]
            try:
                np.asarray(array[:])
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"{store.path}: cannot read derived/{name}/{part}: {_first_line(exc)}") from None
        report.checks.append(f"derived/{name}")
    specs = validate.array_specs(store.attrs, store.commit)  # committed elements: an incomplete store's arrays
    for name, array in store._arrays.items():  # may hold room past them (the input index: a complete store's)
        n = specs[name][1] if name in specs else array.shape[0]
        report.chunks_read[name] = -(-n // int(array.chunks[0]))
    report.seconds = time.perf_counter() - t0
    return report
