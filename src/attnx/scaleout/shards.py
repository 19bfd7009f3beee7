"""Cutting a corpus into shards: contiguous runs of ``records`` whole input records, streamed.

The coordinator reads the input once, line by line (plain, gzip or stdin alike), and cuts after the line
that completes a shard's last record, so a shard is a byte string a worker parses with the ordinary
readers (:meth:`Source.from_bytes`). The cut follows each reader's notion of a record exactly, so the
content digest at a shard's end equals the one a single process records at the end of the same window:
a store started by one can be resumed by the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from attnx.engine.sources import Source


@dataclass(frozen=True)
class Shard:
    """Input records ``first_id .. first_id + records - 1``: the bytes of lines ``first_line ..``."""

    index: int  # shard number (0-based)
    first_id: int
    first_line: int
    records: int
    data: bytes  # decompressed lines, newlines included
    digest: str  # sha256 of the input's content from its start to the end of this shard

    @property
    def end_id(self) -> int:
        return self.first_id + self.records


def _completes_record(fmt: str, text: str, in_sentence: bool) -> tuple[bool, bool]:
    """(does this line complete a record, is a CoNLL-U sentence open after it) for the readers of
    :class:`Source`: text/TSV every line; JSONL every non-blank line; CoNLL-U the blank line after a
    sentence with at least one token line."""
    blank = not text.strip()
    if fmt in ("text", "tsv"):
        return True, False
    if fmt == "jsonl":
        return not blank, False
    if blank:
        return in_sentence, False
    return False, in_sentence or not text.startswith("#")


DEFAULT_SHARD_RECORDS = 16384  # stdin, or an input too large for the default to starve a worker
SHARDS_PER_WORKER = 4  # a planned run gives each worker about this many shards
MIN_SHARD_RECORDS = 256  # below this a shard's fixed costs (count, fork, merge, commit) outweigh its work


def plan_shard_records(records: int | None, workers: int, window_records: int) -> int:
    """Records per shard for an input of ``records`` records (None: unknown, e.g. stdin) on ``workers``.

    Unknown sizes, one worker and inputs large enough to give every worker :data:`SHARDS_PER_WORKER` default
    shards keep :data:`DEFAULT_SHARD_RECORDS`. Smaller inputs get shards of ``records / (workers x
    SHARDS_PER_WORKER)``: rounded down to whole ``window_records`` windows when that is at least one window, so each
    shard is sorted and batched in one process's windows; below one window the shard is its own window (as
    any shard smaller than a window is), never under :data:`MIN_SHARD_RECORDS`. Pure.
    """
    if records is None or workers <= 1:
        return DEFAULT_SHARD_RECORDS
    target = math.ceil(records / (workers * SHARDS_PER_WORKER))
    if target >= DEFAULT_SHARD_RECORDS:
        return DEFAULT_SHARD_RECORDS
    if target >= window_records:
        return (target // window_records) * window_records  # rounded down: never fewer shards than planned
    return max(MIN_SHARD_RECORDS, target)


def count_records(source: Source, limit: int | None = None) -> int | None:
    """Input records of a file (plain or gzip), counted as :func:`cut_shards` cuts them, stopping once past
    ``limit``; None for stdin (it can be read only once). Reads the file once more; no parsing beyond lines."""
    if source.path == "-":
        return None
    count, in_sentence = 0, False
    for _, raw in source.raw_lines():
        done, in_sentence = _completes_record(source.format, raw.decode("utf-8", "replace"), in_sentence)
        count += done
        if limit is not None and count > limit:
            return count
    return count + in_sentence


def cut_shards(source: Source, records: int) -> Iterator[Shard]:
    """Shards of ``records`` input records each (the last may hold fewer), in input order.

    Holds one shard's bytes at a time. Lines after the last record (trailing blank lines) go into the last
    shard, or form an empty final shard when they follow a full one.
    """
    if records < 1:
        raise ValueError("records per shard must be >= 1")
    fmt = source.format
    parts: list[bytes] = []
    count = first_id = index = 0
    first_line = 1
    in_sentence = False
    lineno = 0
    for lineno, raw in source.raw_lines():
        parts.append(raw)
        done, in_sentence = _completes_record(fmt, raw.decode("utf-8", "replace"), in_sentence)
        if done:
            count += 1
            if count == records:
                yield Shard(index, first_id, first_line, count, b"".join(parts), source.content_digest())
                index, first_id, first_line = index + 1, first_id + count, lineno + 1
                parts, count = [], 0
    if in_sentence:
        count += 1  # a CoNLL-U sentence ended by the end of the file
    if parts:
        yield Shard(index, first_id, first_line, count, b"".join(parts), source.content_digest())
