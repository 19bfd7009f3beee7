"""The appending layer under the writers: a batch as per-array values, and an append-only array stream.

:class:`StoredBatch` is what the engine hands over; :func:`batch_arrays` turns it into the values each store
array gains (offsets counted from where the batch lands); :class:`ArrayStream` appends them to one 1-D array,
writing whole chunks and holding the partly filled last one in memory. Used by :class:`StoreWriter` (one
process, or a distributed run's coordinator) and :class:`attnx.store.region.RegionWriter` (a worker's shard).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import zarr
from zarr.core.array import AsyncArray
from zarr.storage import StorePath

from attnx.errors import StoreError
from attnx.store.chunk_writer import ChunkEncoder, ChunkPool
from attnx.store.layout import Payload


@dataclass(frozen=True)
class StoredBatch:
    """A batch of records in physical order, ready to append. ``b`` records, ``T`` tokens, ``W`` words."""

    attn: np.ndarray  # (sum_b payload elements,) in the store dtype, records back to back
    input_id: np.ndarray  # (b,) int64
    length: np.ndarray  # (b,) int32
    len_a: np.ndarray  # (b,) int32
    line: np.ndarray  # (b,) int64
    truncated: np.ndarray  # (b,) bool
    tokens: dict[str, np.ndarray]  # "ids", "segment", "special", "punct", "word": (T,) each
    words: dict[str, np.ndarray] | None = None  # "head": (W,) int32, "deprel": (W,) str objects
    word_count: np.ndarray | None = None  # (b,) words per record
    input_window: int = -1  # window of input records these came from (resume identity check)
    input_digest: str = ""  # sha256 of the input's content up to the end of that window


def batch_arrays(
    batch: StoredBatch,
    payload: Payload,
    layers: int,
    heads: int,
    start: dict[str, int],
    deprel_ids: Callable[[np.ndarray], np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """The values ``batch`` appends to each array, its records' offsets counted from ``start`` (the
    payload, ``tok`` and ``words`` elements written before it). ``deprel_ids``: deprel names -> int16 ids
    (CoNLL-U stores; None for others)."""
    b = len(batch.input_id)
    lengths = batch.length.astype(np.int64)
    sizes = payload.record_sizes(lengths, layers, heads)
    if int(sizes.sum()) != len(batch.attn):
        raise StoreError(f"batch payload has {len(batch.attn)} elements, lengths say {int(sizes.sum())}")
    out = {
        payload.array: batch.attn,
        "rec/input_id": batch.input_id,
        "rec/attn_start": start["payload"] + np.concatenate([[0], np.cumsum(sizes)[:-1]]),
        "rec/length": batch.length,
        "rec/len_a": batch.len_a,
        "rec/tok_start": start["tok"] + np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        "rec/line": batch.line,
        "rec/truncated": batch.truncated,
        **{f"tok/{key}": values for key, values in batch.tokens.items()},
    }
    if deprel_ids is None:
        out["rec/word_start"] = np.zeros(b, np.int64)
        return out
    counts = batch.word_count if batch.word_count is not None else np.zeros(b, np.int64)
    out["rec/word_start"] = start["words"] + np.concatenate([[0], np.cumsum(counts)[:-1]])
    words = batch.words or {"head": np.empty(0, np.int32), "deprel": np.empty(0, object)}
    out["words/head"] = words["head"]
    out["words/deprel"] = deprel_ids(words["deprel"])
    return out


# Arrays written by attnx write chunks equal to the fill value too, so every chunk of every array exists and a
# missing chunk object is an error on read, never a silent fill value (checked by verify). Set on each array,
# not with ``zarr.config.set``: that is one process-wide setting, and a context that another thread leaves
# resets it under the feet of a writer opening its arrays (seen with in-process Dask workers).
EVERY_CHUNK = {"write_empty_chunks": True}


def every_chunk(array: zarr.Array) -> zarr.Array:
    """``array`` opened to write every chunk, fill-valued ones included."""
    return array.with_config(EVERY_CHUNK)


def in_session(array: zarr.Array, store: zarr.abc.store.Store) -> zarr.Array:
    """``array`` (its metadata and configuration as this process holds them) on ``store``, read from nothing:
    the writer's arrays in the session that follows its commit."""
    aa = array.async_array
    return zarr.Array(AsyncArray(aa.metadata, StorePath(store, aa.store_path.path), aa.config))


class ArrayStream:
    """An append-only 1-D array; the unwritten tail, from the last chunk boundary on, stays in memory; zarr
    writes whole chunks before ``flush`` returns. :func:`array_stream` picks :class:`PooledArrayStream` where
    a :class:`ChunkPool` can take the array's chunks."""

    def __init__(self, array: zarr.Array, committed: int) -> None:
        self._array = array
        self.chunk = int(array.chunks[0])
        self.base = committed - committed % self.chunk  # first element held in memory
        tail = np.asarray(array[self.base : committed]) if committed > self.base else np.empty(0, array.dtype)
        self._start(tail)

    def _start(self, tail: np.ndarray) -> None:
        self._parts: list[np.ndarray] = [tail]
        self._held = len(tail)

    @property
    def array(self) -> zarr.Array:
        return self._array

    @array.setter
    def array(self, array: zarr.Array) -> None:
        """A new session's view of the array (after a commit): chunks go to that session from now on."""
        self.drain()
        self._array = array

    def drain(self) -> None:
        """Wait until every chunk handed on is stored (zarr's path: nothing to wait for)."""

    @property
    def total(self) -> int:
        return self.base + self._held

    def append(self, values: np.ndarray) -> None:
        if len(values):
            self._parts.append(np.ascontiguousarray(values, dtype=self.array.dtype))
            self._held += len(values)

    def skip_written(self, stop: int) -> None:
        """Elements from here to ``stop`` were written by someone else (a worker's whole chunks): carry on
        after them. Both ends must lie on chunk boundaries."""
        self.flush(partial=False)
        if self._held or self.base % self.chunk or stop % self.chunk or stop < self.base:
            raise StoreError(f"{self.array.path}: cannot skip to {stop} from {self.total} (not on chunk boundaries)")
        self.base = stop

    def trim(self) -> None:
        """Shrink the array to what was appended (a distributed run reserves room ahead of its shards)."""
        self.drain()
        if self.array.shape[0] > self.total:
            # nothing was written past the total: skip zarr's per-chunk deletes over the reserved room
            zarr.core.sync.sync(self.array._async_array.resize((self.total,), delete_outside_chunks=False))

    def values(self) -> np.ndarray:
        """Everything appended so far (written and held), as one array."""
        self.drain()
        return np.concatenate([np.asarray(self.array[: self.base]), *self._parts])

    def _grow(self, end: int) -> None:
        """Room for elements up to ``end``. Icechunk refuses a chunk outside the array's shape, so the shape
        leads the writes; it grows by doubling (to at least ``end`` and one chunk), because each change is a
        metadata write through zarr's event loop (0.6 ms alone, 2-3 ms beside busy I/O threads), which chunk
        by chunk and commit by commit cost the writer thread a quarter to a third of its time. Readers of an
        incomplete store never look past the commit's counts (its arrays may be longer, as a distributed run's
        are); ``finish`` trims the room."""
        shape = self.array.shape[0]
        if end > shape:
            self.array.resize((max(end, 2 * shape, self.chunk),))

    def flush(self, partial: bool, min_chunks: int = 1) -> None:
        """Write whole chunks once ``min_chunks`` are held; with ``partial`` also the partly filled last one
        (it stays in memory too, to be rewritten when it grows)."""
        if self._held == 0 or (not partial and self._held < min_chunks * self.chunk):
            return
        tail = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        whole = (len(tail) // self.chunk) * self.chunk
        end = len(tail) if partial else whole
        if end > 0:
            self._grow(self.base + end)
            self.array[self.base : self.base + end] = tail[:end]
        self.base += whole
        rest = tail[whole:]
        self._parts = [rest]
        self._held = len(rest)


class PooledArrayStream(ArrayStream):
    """An :class:`ArrayStream` whose chunks are encoded and stored on a :class:`ChunkPool`'s I/O threads (the
    same bytes as zarr's path). Appended values are copied straight into a chunk-sized buffer taken from the
    pool's free list; a full buffer goes to the pool as it is and comes back once stored. So the writer
    thread copies each value once, into memory it has used before: concatenating the held parts into fresh
    arrays, as zarr's path does, made the kernel zero new pages for every chunk (perf: 15% of the writer
    process's samples in ``clear_page_erms`` under ``np.concatenate``). ``flush(partial=False)`` has nothing
    to do: whole chunks go as soon as they fill."""

    def __init__(self, array: zarr.Array, committed: int, pool: ChunkPool, encoder: ChunkEncoder) -> None:
        self.pool = pool
        self._encoder = encoder
        super().__init__(array, committed)

    def _start(self, tail: np.ndarray) -> None:
        self._buf = self.pool.buffer(self.chunk, self.array.dtype)
        self._buf[: len(tail)] = tail
        self._held = len(tail)

    @ArrayStream.array.setter
    def array(self, array: zarr.Array) -> None:
        self.drain()
        self._array = array
        encoder = ChunkEncoder.of(array)
        if encoder is None:  # the same array in a new session: its codecs cannot have changed
            raise StoreError(f"{array.path}: its codecs changed between sessions")
        self._encoder = encoder

    def drain(self) -> None:
        self.pool.drain()

    def append(self, values: np.ndarray) -> None:
        at, n = 0, len(values)
        while at < n:
            take = min(self.chunk - self._held, n - at)
            self._buf[self._held : self._held + take] = values[at : at + take]
            self._held += take
            at += take
            if self._held == self.chunk:
                self._grow(self.base + self.chunk)
                self.pool.submit(self._encoder, self.base // self.chunk, self._buf, recycle=True)
                self.base += self.chunk
                self._buf = self.pool.buffer(self.chunk, self.array.dtype)
                self._held = 0

    def values(self) -> np.ndarray:
        self.drain()
        return np.concatenate([np.asarray(self.array[: self.base]), self._buf[: self._held]])

    def flush(self, partial: bool, min_chunks: int = 1) -> None:
        if not partial or self._held == 0:
            return
        # the partly filled chunk, padded with the fill value as zarr pads an edge chunk; it stays in
        # ``_buf`` to be rewritten when it grows
        copy = self.pool.buffer(self.chunk, self.array.dtype)
        copy[: self._held] = self._buf[: self._held]
        copy[self._held :] = self._encoder.fill
        self._grow(self.base + self._held)
        self.pool.submit(self._encoder, self.base // self.chunk, copy, recycle=True)


def array_stream(array: zarr.Array, committed: int, pool: ChunkPool | None) -> ArrayStream:
    """A stream for ``array``: on ``pool``'s I/O threads where its codecs allow, else through zarr."""
    encoder = ChunkEncoder.of(array) if pool is not None else None
    if encoder is None:
        return ArrayStream(array, committed)
    return PooledArrayStream(array, committed, pool, encoder)
