"""Writing one shard of a distributed run into its region of the store, through an Icechunk fork session.

A shard's region in each array is ``[start, end)``, known before it runs (its sizes are counted first). The
worker writes the whole chunks inside the region; the elements before its first chunk boundary and after its
last one share chunks with the neighbouring shards, so they go back to the coordinator, which writes those
chunks itself when it merges the shards in input order (:meth:`StoreWriter.merge_shard`). No two writers ever
touch the same chunk, and the merged store is laid out exactly as one process would have written it.
"""

from __future__ import annotations

from dataclasses import dataclass

import icechunk
import numpy as np
import zarr

from attnx.config import Config
from attnx.errors import StoreError
from attnx.store.append import StoredBatch, batch_arrays, every_chunk
from attnx.store.layout import Payload, small_arrays


@dataclass(frozen=True)
class Edge:
    """What a shard hands back for one array: ``head`` (elements before its first chunk boundary),
    ``interior_end`` (where the whole chunks it wrote end; -1 when it wrote none) and ``tail``."""

    head: np.ndarray
    interior_end: int
    tail: np.ndarray

    def as_tuple(self) -> tuple[np.ndarray, int, np.ndarray]:
        return self.head, self.interior_end, self.tail


class _RegionStream:
    """Elements ``[start, end)`` of one array, appended in order; whole chunks inside are written."""

    def __init__(self, array: zarr.Array, start: int, end: int, flush_chunks: int) -> None:
        self.array, self.start, self.end = array, start, end
        chunk = int(array.chunks[0])
        self.chunk = chunk
        c0, c1 = -(-start // chunk) * chunk, (end // chunk) * chunk
        self.c0, self.c1 = (c0, c1) if c1 > c0 else (end, end)  # no whole chunk inside: all of it is the head
        self.flush_elems = max(1, flush_chunks) * chunk
        self.pos = start
        self._head: list[np.ndarray] = []
        self._tail: list[np.ndarray] = []
        self._mid: list[np.ndarray] = []
        self._mid_held = 0
        self._mid_pos = self.c0  # next interior element to write

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.array.dtype)
        n = len(values)
        if self.pos + n > self.end:
            raise StoreError(f"shard overruns its region of {self.array.path} ({self.pos + n} > {self.end})")
        lo, hi = self.pos, self.pos + n
        cut = np.clip([self.c0 - lo, self.c1 - lo], 0, n)
        if cut[0]:
            self._head.append(values[: cut[0]])
        if cut[1] > cut[0]:
            self._mid.append(values[cut[0] : cut[1]])
            self._mid_held += int(cut[1] - cut[0])
        if n > cut[1]:
            self._tail.append(values[cut[1] :])
        self.pos = hi
        if self._mid_held >= self.flush_elems:
            self._write(final=False)

    def _write(self, final: bool) -> None:
        if not self._mid_held:
            return
        held = np.concatenate(self._mid) if len(self._mid) > 1 else self._mid[0]
        whole = len(held) if final else (len(held) // self.chunk) * self.chunk
        if whole:
            self.array[self._mid_pos : self._mid_pos + whole] = held[:whole]
            self._mid_pos += whole
        rest = held[whole:]
        self._mid, self._mid_held = ([rest], len(rest)) if len(rest) else ([], 0)

    def finish(self) -> Edge:
        if self.pos != self.end:
            raise StoreError(
                f"shard filled {self.pos - self.start} of the {self.end - self.start} elements of its "
                f"region of {self.array.path}: its sizes changed between counting and running"
            )
        self._write(final=True)
        empty = np.empty(0, self.array.dtype)
        head = np.concatenate(self._head) if self._head else empty
        tail = np.concatenate(self._tail) if self._tail else empty
        return Edge(head, self.c1 if self.c1 > self.c0 else -1, tail)


class RegionWriter:
    """Appends a shard's :class:`StoredBatch`es to its regions, through ``fork`` (a worker's session).

    ``start``/``end``: array name -> the shard's region; ``deprels``: deprel name -> id, fixed by the
    coordinator for the whole run (CoNLL-U stores; None otherwise).
    """

    def __init__(
        self,
        fork: icechunk.session.ForkSession,
        attrs: dict,
        start: dict[str, int],
        end: dict[str, int],
        deprels: dict[str, int] | None,
        flush_chunks: int = Config.writer_flush_chunks,
    ) -> None:
        self.fork = fork
        self.payload = Payload.from_attrs(attrs)
        self.layers, self.heads = len(attrs["layers"]), len(attrs["heads"])
        self.deprels = deprels
        names = [self.payload.array, *small_arrays(bool(attrs.get("conllu")))]
        group = zarr.open_group(store=fork.store, mode="r+", zarr_format=3)
        self.streams = {n: _RegionStream(every_chunk(group[n]), start[n], end[n], flush_chunks) for n in names}

    def _deprel_ids(self, names: np.ndarray) -> np.ndarray:
        try:
            return np.fromiter((self.deprels[n] for n in names), np.int16, len(names))
        except KeyError as exc:
            raise StoreError(f"deprel {exc.args[0]!r} was not counted before the shard ran") from None

    def append(self, batch: StoredBatch) -> None:
        s = self.streams
        start = {"payload": s[self.payload.array].pos, "tok": s["tok/ids"].pos, "words": self._words_pos()}
        arrays = batch_arrays(
            batch, self.payload, self.layers, self.heads, start, self._deprel_ids if self.deprels is not None else None
        )
        for name, values in arrays.items():
            s[name].append(values)

    def _words_pos(self) -> int:
        stream = self.streams.get("words/head")
        return stream.pos if stream is not None else 0

    def finish(self) -> dict[str, Edge]:
        """Write the last whole chunks; the edges for the coordinator."""
        return {name: stream.finish() for name, stream in self.streams.items()}
