"""Reading a store: one committed Icechunk snapshot, validated before anything reads it.

Longer than most modules: every public read of a store (records, tokens, words, blocks, derived results,
history, sizes) lives on the one class that validated the snapshot, so none can bypass the validation.

``AttentionStore`` opens the newest commit of the store's branch (or a given snapshot) and never sees a
half-written batch; a writer may be appending meanwhile. Opening checks the attributes, every array's
metadata and chunk count, and the per-record arrays (:mod:`attnx.store.validate`); every later read that
fails (a missing or corrupt chunk) raises a one-line :class:`StoreError` naming the array and record.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path

import icechunk
import numpy as np
import zarr
from zarr.core.sync import sync

from attnx.errors import StoreError
from attnx.store import checks, validate
from attnx.store.block import AttentionBlock
from attnx.store.chunk_reader import ChunkReader
from attnx.store.layout import BRANCH, INDEX_ARRAY, REC_ARRAYS, STORED_DTYPES, Commit, Payload
from attnx.store.location import StoreLocation, _first_line
from attnx.store.writer import open_repository
from attnx.threads import ordered_map
from attnx.threads import read_ahead as _read_ahead


def _chunk_count(session: icechunk.Session, name: str) -> int:
    async def count() -> int:
        return len({c async for c in session.chunk_coordinates(f"/{name}")})

    return sync(count())


class AttentionStore:
    """Read access to one committed snapshot of a store: O(1) random access by input id, streamed blocks.

    Records are numbered in input order: record ``i`` is the ``i``-th record of the input.
    ``where``: a local path, ``s3://bucket/prefix`` or ``gs://bucket/prefix``; ``snapshot``: an Icechunk
    snapshot id (default: the newest commit).
    """

    def __init__(self, where: str | os.PathLike | StoreLocation, snapshot: str | None = None) -> None:
        self.location = StoreLocation.parse(where)
        self.path = str(self.location)
        if not self.location.exists():
            if self.location.is_format_1():
                raise StoreError(f"{self.path}: a format-1 store (attnx 0.1); convert it: attnx convert OLD NEW")
            raise StoreError(f"{self.path}: no attnx store here")
        self.repo = open_repository(self.location)
        try:
            if snapshot:
                self.session = self.repo.readonly_session(snapshot_id=snapshot)
            else:
                self.session = self.repo.readonly_session(branch=BRANCH)
            self.group = zarr.open_group(store=self.session.store, mode="r", zarr_format=3)
            raw_attrs = self.group.attrs.asdict().get("attnx")
        except Exception as exc:  # noqa: BLE001 - a broken snapshot or group becomes one line
            raise StoreError(f"{self.path}: cannot open store ({_first_line(exc)})") from None
        self.snapshot_id: str = self.session.snapshot_id
        self.attrs, self.commit = validate.check_attrs(raw_attrs, self.path)
        self.complete = bool(self.attrs.get("complete"))
        self.dtype: str = self.attrs["dtype"]
        self.scale = STORED_DTYPES[self.dtype].scale
        self.layers: list[int] = list(self.attrs["layers"])
        self.heads: list[int] = list(self.attrs["heads"])
        self.n_layers, self.n_heads = len(self.layers), len(self.heads)
        self.payload_kind = Payload.from_attrs(self.attrs)
        self.payload = self.payload_kind.kind
        self.features: list[str] = list(self.payload_kind.features)
        self._arrays = self._open_arrays()
        self._chunk_readers = {name: ChunkReader.for_array(array) for name, array in self._arrays.items()}
        self._attn = self._arrays[self.payload_kind.array]
        self._chunk = int(self._attn.chunks[0])
        self._cache: dict[int, np.ndarray] = {}
        validate.check_records(self._physical, self.attrs, self.commit, self.path)

    def _open_arrays(self) -> dict[str, zarr.Array]:
        specs = validate.array_specs(self.attrs, self.commit)
        if self.complete:
            specs[INDEX_ARRAY] = (np.dtype(np.int64), self.commit.records)
        arrays = {}
        for name, (dtype, n) in specs.items():
            try:
                array = self.group[name]
            except KeyError:
                raise StoreError(f"{self.path}: array {name} is missing") from None
            except Exception as exc:  # noqa: BLE001 - damaged array metadata (e.g. an unknown codec argument)
                raise StoreError(f"{self.path}: cannot open array {name}: {_first_line(exc)}") from None
            if not isinstance(array, zarr.Array):
                raise StoreError(f"{self.path}: {name} is not an array")
            validate.check_array_meta(name, array.shape, array.dtype, dtype, n, self.path, reserved=not self.complete)
            try:
                present = _chunk_count(self.session, name)
            except Exception as exc:  # noqa: BLE001 - a missing or corrupt manifest
                raise StoreError(f"{self.path}: cannot list the chunks of {name}: {_first_line(exc)}") from None
            validate.check_chunk_count(name, n, int(array.chunks[0]), present, self.path)
            arrays[name] = array
        return arrays

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        model = self.attrs.get("model", {}).get("name", "?")
        return (
            f"<AttentionStore {self.path!r}: {len(self)} records, {state}, {self.dtype} {self.payload}, "
            f"{self.n_layers} layers x {self.n_heads} heads of {model}, snapshot {self.snapshot_id}>"
        )

    # -- reading with one-line errors -----------------------------------------------------------------------
    def _read(self, name: str, start: int, stop: int, what: Callable[[], str] | None = None) -> np.ndarray:
        """Elements [start, stop) of array ``name``; any failure names the array and the records involved."""
        return self._read_many([(name, start, stop)], what or (lambda: f"elements {start}..{stop - 1}"))[0]

    def _read_many(self, spans: list[tuple[str, int, int]], what: Callable[[], str],
                   out: np.ndarray | None = None) -> list[np.ndarray]:
        """Several ``(array, start, stop)`` reads: every chunk object they need is fetched in one batch on zarr's
        event loop, then each array is decoded in this thread (:mod:`attnx.store.chunk_reader`; zarr's own path for
        arrays whose codecs that module does not decode). ``out``: a buffer the *last* span is decoded into (its
        first ``stop - start`` elements are returned). Any failure raises a one-line :class:`StoreError` naming
        the array and ``what()`` (the records involved)."""
        for name, a, b in spans:
            if not 0 <= a <= b <= self._arrays[name].shape[0]:
                raise StoreError(f"{self.path}: cannot read {name} ({what()}): elements {a}..{b} out of range")
        readers = [self._chunk_readers[name] for name, _, _ in spans]
        if any(r is None for r in readers):
            return self._read_many_zarr(spans, what, out)

        async def fetch_all() -> list:
            return await asyncio.gather(*(r.fetch(a, b) for r, (_, a, b) in zip(readers, spans, strict=True)),
                                        return_exceptions=True)

        try:
            raws = sync(fetch_all())
        except Exception as exc:  # noqa: BLE001 - the event loop itself failed
            raise StoreError(f"{self.path}: cannot read {spans[0][0]} ({what()}): {_first_line(exc)}") from None
        values = []
        for k, (reader, (name, a, b), raw) in enumerate(zip(readers, spans, raws, strict=True)):
            if isinstance(raw, BaseException):
                raise StoreError(f"{self.path}: cannot read {name} ({what()}): {_first_line(raw)}") from None
            if k == len(spans) - 1 and name == self.payload_kind.array:
                values.append(self._decode_payload(reader, raw, a, b, what, out))
                continue
            try:
                values.append(reader.decode(raw, a, b, out if k == len(spans) - 1 else None))
            except Exception as exc:  # noqa: BLE001 - ChunkError, or a codec library's own
                raise StoreError(f"{self.path}: cannot read {name} ({what()}): {_first_line(exc)}") from None
        return values

    def _decode_payload(self, reader: ChunkReader, raw: list, a: int, b: int, what: Callable[[], str],
                        out: np.ndarray | None) -> np.ndarray:
        """Payload elements [a, b) (maps, or --stats-only features, in the stored dtype) decoded from the raw
        chunks ``raw`` of :meth:`ChunkReader.fetch`: the one place every map the reader returns passes through."""
        try:
            return reader.decode(raw, a, b, out)
        except Exception as exc:  # noqa: BLE001 - ChunkError, or a codec library's own
            raise StoreError(f"{self.path}: cannot read {self.payload_kind.array} ({what()}): "
                             f"{_first_line(exc)}") from None

    def _read_one_zarr(self, name: str, start: int, stop: int, what: Callable[[], str]) -> np.ndarray:
        try:
            return np.asarray(self._arrays[name][start:stop])
        except Exception as exc:  # noqa: BLE001 - missing/corrupt chunks surface in many exception types
            raise StoreError(f"{self.path}: cannot read {name} ({what()}): {_first_line(exc)}") from None

    def _read_many_zarr(self, spans: list[tuple[str, int, int]], what: Callable[[], str],
                        out: np.ndarray | None = None) -> list[np.ndarray]:
        """:meth:`_read_many` through zarr's codec pipeline (arrays with codecs :mod:`attnx.store.chunk_reader` does
        not decode), all spans in one pass of zarr's event loop."""
        from zarr.core.buffer.cpu import NDBuffer

        def one(k: int, name: str, a: int, b: int):  # noqa: ANN202 - a zarr coroutine
            array = self._arrays[name]._async_array
            if out is not None and k == len(spans) - 1:
                return array.get_orthogonal_selection((slice(a, b),), out=NDBuffer.from_numpy_array(out[: b - a]))
            return array.getitem(slice(a, b))

        async def gather() -> list:
            return await asyncio.gather(*(one(k, *span) for k, span in enumerate(spans)))

        try:
            values = [np.asarray(x) for x in sync(gather())]
            if out is not None:
                values[-1] = out[: spans[-1][2] - spans[-1][1]]
            return values
        except Exception as exc:  # noqa: BLE001 - missing/corrupt chunks surface in many exception types
            for name, a, b in spans:  # read each on its own: the first that fails raises, naming its array
                self._read_one_zarr(name, a, b, what)
            raise StoreError(f"{self.path}: cannot read {spans[0][0]} ({what()}): {_first_line(exc)}") from None

    # -- per-record metadata (physical order, committed part only) -----------------------------------------
    @cached_property
    def _physical(self) -> dict[str, np.ndarray]:
        n = self.commit.records
        return {name.split("/")[1]: self._read(name, 0, n, lambda: "record table") for name in REC_ARRAYS}

    @cached_property
    def position(self) -> np.ndarray:
        """(N,) int64: physical position of input record i, -1 where it is not (yet) stored."""
        input_id = self._physical["input_id"]
        if self.complete:
            position = self._read(INDEX_ARRAY, 0, self.commit.records, lambda: "input index")
            validate.check_position(position, input_id, self.path)
            return position
        position = np.full(int(input_id.max()) + 1 if len(input_id) else 0, -1, np.int64)
        position[input_id] = np.arange(len(input_id))
        return position

    def __len__(self) -> int:
        return self.commit.records

    def _pos(self, i: int) -> int:
        if i < 0:
            i += len(self.position)
        if not 0 <= i < len(self.position) or self.position[i] < 0:
            raise IndexError(f"{self.path}: record {i} is not stored (store holds {len(self)} records)")
        return int(self.position[i])

    def _input_order(self, name: str) -> np.ndarray:
        out = np.zeros(len(self.position), self._physical[name].dtype)
        stored = self.position >= 0
        out[stored] = self._physical[name][self.position[stored]]
        return out

    @cached_property
    def lengths(self) -> np.ndarray:
        """(N,) int32: tokens per record (input order), special tokens included; 0 where not stored."""
        return self._input_order("length")

    @cached_property
    def lines(self) -> np.ndarray:
        """(N,) int64: 1-based source line of each record (input order)."""
        return self._input_order("line")

    @cached_property
    def truncated(self) -> np.ndarray:
        """(N,) bool: record was cut to --max-length."""
        return self._input_order("truncated")

    # -- maps ------------------------------------------------------------------------------------------------
    def _read_payload(self, start: int, stop: int, record: int) -> np.ndarray:
        """Elements [start, stop) of the payload through a small cache of decoded chunks."""
        c0, c1 = start // self._chunk, (stop - 1) // self._chunk
        name = self.payload_kind.array
        if c0 != c1:
            return self._read(name, start, stop, lambda: f"record {record}")
        chunk = self._cache.get(c0)
        if chunk is None:
            chunk = self._read(
                name, c0 * self._chunk, min((c0 + 1) * self._chunk, self.commit.attn), lambda: f"record {record}"
            )
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[c0] = chunk
        return chunk[start - c0 * self._chunk : stop - c0 * self._chunk]

    def attention(self, i: int) -> np.ndarray:
        """Maps of input record ``i`` as float32 probabilities, shape ``(layers, heads, l, l)`` (query, key)."""
        if self.payload != "maps":
            raise StoreError(f"{self.path}: a --stats-only store holds features, not maps (see record_features)")
        p = self._pos(i)
        l = int(self._physical["length"][p])
        start = int(self._physical["attn_start"][p])
        flat = self._read_payload(start, start + self.n_layers * self.n_heads * l * l, i)
        checks.check_record_maps(flat, l, self.n_layers * self.n_heads, self.dtype, i, self.path)
        return (flat.astype(np.float32) * np.float32(self.scale)).reshape(self.n_layers, self.n_heads, l, l)

    def record_features(self, i: int) -> np.ndarray:
        """--stats-only stores: record ``i``'s feature row sums, float32 ``(layers, heads, F)`` (see ``features``)."""
        if self.payload != "features":
            raise StoreError(f"{self.path}: holds maps, not precomputed features")
        p = self._pos(i)
        start = int(self._physical["attn_start"][p])
        n = self.n_layers * self.n_heads * len(self.features)
        values = self._read_payload(start, start + n, i)
        if not np.isfinite(values).all():
            raise StoreError(f"{self.path}: record {i}: a feature value is not finite (the store is damaged)")
        return values.reshape(self.n_layers, self.n_heads, len(self.features))

    # -- tokens ------------------------------------------------------------------------------------------------
    @cached_property
    def vocab(self) -> list[str]:
        try:
            vocab = self.group["tok"].attrs.get("vocab")
        except Exception as exc:  # noqa: BLE001 - a damaged snapshot can hold undecodable group metadata
            raise StoreError(f"{self.path}: cannot read the vocabulary (tok attributes): {_first_line(exc)}") from None
        return validate.check_vocab(vocab, self.attrs, self.path)

    def _tok(self, name: str, i: int) -> np.ndarray:
        p = self._pos(i)
        start = int(self._physical["tok_start"][p])
        values = self._read(f"tok/{name}", start, start + int(self._physical["length"][p]), lambda: f"record {i}")
        if name == "ids" and ((values < 0) | (values >= len(self.vocab))).any():
            raise StoreError(f"{self.path}: tok/ids of record {i} are outside the vocabulary")
        if name == "word":
            checks.check_record_word_ids(values, self._word_count(p), i, self.path)
        return values

    def token_ids(self, i: int) -> np.ndarray:
        """(l,) int32 token ids of input record ``i``."""
        return self._tok("ids", i)

    def tokens(self, i: int) -> list[str]:
        """Token strings of input record ``i``, special tokens included."""
        vocab = self.vocab
        return [vocab[t] for t in self._tok("ids", i)]

    def segments(self, i: int) -> np.ndarray:
        return self._tok("segment", i)

    def special_mask(self, i: int) -> np.ndarray:
        return self._tok("special", i)

    def punct_mask(self, i: int) -> np.ndarray:
        return self._tok("punct", i)

    def word_ids(self, i: int) -> np.ndarray:
        return self._tok("word", i)

    def dependencies(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """CoNLL-U stores: ``(head, deprel)`` per word of record ``i``: (w,) int32 0-based head word (-1: root)
        and (w,) int16 index into :attr:`deprels`."""
        if not self.attrs.get("conllu"):
            raise StoreError(f"{self.path}: not made from CoNLL-U, no dependency annotations")
        p = self._pos(i)
        start = int(self._physical["word_start"][p])
        stop = start + self._word_count(p)
        head = self._read("words/head", start, stop, lambda: f"record {i}")
        deprel = self._read("words/deprel", start, stop, lambda: f"record {i}")
        checks.check_record_words(head, deprel, len(self.deprels), i, self.path)
        return head, deprel

    def _word_count(self, p: int) -> int:
        """Words of the record at physical position ``p`` (CoNLL-U stores), else its tokens."""
        if not self.attrs.get("conllu"):
            return int(self._physical["length"][p])
        start = int(self._physical["word_start"][p])
        return (int(self._physical["word_start"][p + 1]) if p + 1 < len(self) else self.commit.words) - start

    @cached_property
    def deprels(self) -> list[str]:
        return list(self.attrs.get("deprels", []))

    # -- streaming ---------------------------------------------------------------------------------------------
    def plan_blocks(self, max_elems: int, records: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Physical ranges ``[p0, p1)`` of at most ``max_elems`` payload elements each (a record larger
        than that is a block of its own). ``records``: sorted physical positions to restrict to."""
        starts = self._physical["attn_start"]
        sizes = self.payload_kind.record_sizes(self._physical["length"], self.n_layers, self.n_heads)
        ends = starts + sizes
        positions = np.arange(len(self)) if records is None else np.asarray(records)
        plan: list[tuple[int, int]] = []
        k = 0
        n = len(positions)
        while k < n:
            p0 = positions[k]
            limit = starts[p0] + max_elems
            j = k + 1
            while j < n and positions[j] == positions[j - 1] + 1 and ends[positions[j]] <= limit:
                j += 1
            plan.append((int(p0), int(positions[j - 1]) + 1))
            k = j
        return plan

    def read_block(self, p0: int, p1: int, out: np.ndarray | None = None) -> AttentionBlock:
        """Records at physical positions [p0, p1) as one :class:`AttentionBlock`; ``out``: a 1-D buffer of the
        payload's dtype, at least the block's payload long, that the block's ``attn`` is decoded into (a view)."""
        ph = self._physical
        ids = ph["input_id"]

        def what() -> str:
            return f"records {int(ids[p0])}..{int(ids[p1 - 1])} (positions {p0}..{p1 - 1})"

        a0 = int(ph["attn_start"][p0])
        lengths = ph["length"][p0:p1]
        sizes = self.payload_kind.record_sizes(lengths, self.n_layers, self.n_heads)
        attn_offsets = np.concatenate([[0], np.cumsum(sizes)])
        t0 = int(ph["tok_start"][p0])
        tok_offsets = np.concatenate([[0], np.cumsum(lengths.astype(np.int64))])
        t1 = t0 + int(tok_offsets[-1])
        names = ("ids", "segment", "special", "punct", "word")
        a1 = a0 + int(attn_offsets[-1])
        *tok_values, attn = self._read_many([*((f"tok/{n}", t0, t1) for n in names),
                                             (self.payload_kind.array, a0, a1)], what, out)
        tok = dict(zip(names, tok_values, strict=True))
        validate.check_tokens(tok, len(self.vocab), t0, self.path)
        extra = {}
        if self.attrs.get("conllu"):
            w0 = int(ph["word_start"][p0])
            w1 = int(ph["word_start"][p1]) if p1 < len(self) else self.commit.words
            extra = dict(
                word_head=self._read("words/head", w0, w1, what),
                word_deprel=self._read("words/deprel", w0, w1, what),
                word_offsets=np.concatenate([ph["word_start"][p0:p1] - w0, [w1 - w0]]).astype(np.int64),
            )
        block = AttentionBlock(
            first=p0,
            record_ids=ids[p0:p1],
            lengths=lengths,
            len_a=ph["len_a"][p0:p1],
            attn=attn,
            attn_offsets=attn_offsets,
            scale=self.scale,
            token_ids=tok["ids"],
            segment=tok["segment"],
            special=tok["special"],
            punct=tok["punct"],
            word=tok["word"],
            tok_offsets=tok_offsets,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            **extra,
        )
        checks.check_block(block, self.dtype, self.payload, len(self.vocab), len(self.deprels), self.path)
        return block

    def blocks(
        self,
        max_bytes: int = 64 << 20,
        records: np.ndarray | None = None,
        read_ahead: int = 2,
        threads: int | None = None,
        reuse: bool = False,
    ) -> Iterator[AttentionBlock]:
        """Stream the store as contiguous blocks of about ``max_bytes`` of stored attention each, in order.

        ``threads`` reader threads (default: the usable cores, at most 4) read and decompress blocks ahead of
        the consumer (blosc, zstd and crc32c release the GIL, so decoding scales with the cores), at most
        ``read_ahead + threads`` blocks in flight: memory stays bounded by about that many times
        ``max_bytes`` whatever the store's size. ``records``: optional input-order ids to restrict to.

        ``reuse``: decode into a few buffers that are used again, so a block's ``attn`` is valid only until the
        next block is requested (for consumers that reduce each block, like ``analyze``). A fresh 64 MB array
        per block costs its page faults and zeroing every time: reading EWT's 1.1 GB float16 store took 1.31
        core-seconds per GB fresh and 1.15 reused (1.07 vs 1.35 GB/s, one reader).
        """
        itemsize = STORED_DTYPES[self.dtype].storage.itemsize
        positions = None
        if records is not None:
            records = np.asarray(records, np.int64)
            if len(records) and (records.min() < 0 or records.max() >= len(self.position)):
                raise StoreError(f"{self.path}: some requested records are not stored")
            positions = np.sort(self.position[records])
            if (positions < 0).any():
                raise StoreError(f"{self.path}: some requested records are not stored")
        plan = self.plan_blocks(max(1, max_bytes // itemsize), positions)
        threads = threads if threads is not None else min(4, len(os.sched_getaffinity(0)))
        pool = _Buffers(self._attn.dtype, max((self._span(*r) for r in plan), default=0),
                        read_ahead + max(threads, 1) + 1) if reuse else None

        def read(span: tuple[int, int]) -> tuple[AttentionBlock, np.ndarray | None]:
            buf = pool.take() if pool else None
            return self.read_block(*span, out=buf), buf

        if threads <= 1:
            source = _read_ahead(lambda: map(read, plan), read_ahead, "attnx-block-reader")
        else:
            source = ordered_map(read, plan, threads, ahead=read_ahead + threads)
        for block, buf in source:
            yield block
            if pool is not None and buf is not None:
                pool.give(buf)

    def _span(self, p0: int, p1: int) -> int:
        """Payload elements of the records at physical positions [p0, p1)."""
        ph = self._physical
        sizes = self.payload_kind.record_sizes(ph["length"][p0:p1], self.n_layers, self.n_heads)
        return int(np.sum(sizes))

    # -- derived results ---------------------------------------------------------------------------------------
    def derived_writer(self, name: str, dtype: str, shape: str = "l,l"):  # noqa: ANN201 - DerivedWriter
        """Write per-record results (e.g. attention rollout) back into this store; see :class:`DerivedWriter`."""
        from attnx.store.derived import DerivedWriter

        return DerivedWriter(self, name, dtype, shape)

    def derived_names(self) -> list[str]:
        return sorted(self.group["derived"].group_keys()) if "derived" in self.group else []

    def derived(self, name: str, i: int) -> np.ndarray:
        """Input record ``i``'s values of ``derived/<name>``, viewed as ``(l, l)`` when stored with shape "l,l"."""
        key = f"derived/{name}"
        if not name.isidentifier() or key not in self.group or not self.group[key].attrs.get("complete"):
            raise StoreError(f"{self.path}: no complete derived result {name!r}")
        p = self._pos(i)
        offsets = self.group[f"{key}/offsets"]
        values = self.group[f"{key}/values"]
        if offsets.shape != (len(self) + 1,):
            raise StoreError(f"{self.path}: {key}/offsets has {offsets.shape[0]} entries for {len(self)} records")
        start, stop = (int(x) for x in offsets[p : p + 2])
        l = int(self._physical["length"][p])
        square = self.group[key].attrs.get("shape") == "l,l"
        if not 0 <= start <= stop <= values.shape[0] or (square and stop - start != l * l):
            raise StoreError(f"{self.path}: {key}/offsets of record {i} are inconsistent")
        try:
            out = np.asarray(values[start:stop])
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"{self.path}: cannot read {key}/values (record {i}): {_first_line(exc)}") from None
        return out.reshape(l, l) if square else out

    # -- summary -----------------------------------------------------------------------------------------------
    def history(self) -> list[dict]:
        """The store's commits, newest first: snapshot id, time (UTC), message, records after it and added."""
        out = []
        try:
            for snap in self.repo.ancestry(snapshot_id=self.snapshot_id):
                meta = snap.metadata or {}
                out.append(
                    {
                        "snapshot": snap.id,
                        "time": snap.written_at.isoformat(timespec="seconds"),
                        "message": snap.message,
                        "records": meta.get("records"),
                        "records_added": meta.get("records_added"),
                    }
                )
        except Exception as exc:  # noqa: BLE001 - a deleted or damaged older snapshot (IcechunkError)
            raise StoreError(f"{self.path}: cannot read the commit history after {len(out)} commits (an older "
                             f"snapshot is missing or damaged: {_first_line(exc)})") from None
        return out

    def nbytes_stored(self) -> int:
        """Bytes on disk under a local store's folder (every snapshot kept); object stores: the chunks."""
        return store_nbytes(self.location, self.repo)

    def payload_nbytes_stored(self) -> int:
        """Compressed bytes of the payload array's chunks in this snapshot."""
        try:
            return int(self._attn.nbytes_stored())
        except Exception:  # noqa: BLE001 - not every store answers sizes; report unknown
            return 0

    def info(self) -> dict:
        """A JSON-able summary: sizes, model, dtype, codec, compression ratio, commit history size."""
        itemsize = STORED_DTYPES[self.dtype].storage.itemsize
        raw = self.commit.attn * itemsize
        attn_disk = self.payload_nbytes_stored()
        lengths = self._physical["length"]
        return {
            "path": self.path,
            "format": self.attrs["format"],
            "snapshot": self.snapshot_id,
            "complete": self.complete,
            "records": len(self),
            "tokens": int(lengths.sum()),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
            "truncated": int(self._physical["truncated"].sum()),
            "layers": self.layers,
            "heads": self.heads,
            "dtype": self.dtype,
            "storage_max_abs_error": STORED_DTYPES[self.dtype].max_abs_error,
            "payload": self.payload,
            "codec": self.attrs["codec"],
            "attention_elements": self.commit.attn,
            "attention_bytes_raw": raw,
            "attention_bytes_disk": attn_disk,
            "compression_ratio": raw / attn_disk if attn_disk else None,
            "store_bytes_disk": self.nbytes_stored(),
            "model": self.attrs.get("model", {}),
            "tokenizer": self.attrs.get("tokenizer", {}),
            "input": self.attrs.get("input", {}),
            "options": self.attrs.get("options", {}),
            "attnx_version": self.attrs.get("attnx_version"),
            "created": self.attrs.get("created"),
            "precision": self.attrs.get("precision"),
        }


def store_nbytes(location: StoreLocation, repo: icechunk.Repository | None = None) -> int:
    """Bytes a store takes: everything under a local store's folder (every snapshot kept); on object stores,
    the chunk objects. Needs no validated open (the engine sizes a store it has just written)."""
    local = location.local
    if local is not None:
        return sum(f.stat().st_size for f in Path(local).rglob("*") if f.is_file())
    repo = repo or open_repository(location)
    stats = getattr(repo, "chunk_storage_stats", None)
    return int(stats().native_bytes) if stats else int(repo.total_chunks_storage())


def open_store(where: str | os.PathLike | StoreLocation, snapshot: str | None = None) -> AttentionStore:
    """Open a store for reading: the newest commit (a complete store, or the committed part of a running or
    interrupted one), or ``snapshot``."""
    return AttentionStore(where, snapshot)


__all__ = ["AttentionBlock", "AttentionStore", "Commit", "open_store"]


class _Buffers:
    """Free block buffers for :meth:`AttentionStore.blocks` ``(reuse=True)``: ``take`` never waits (it
    allocates when none is free), ``give`` keeps at most ``keep`` for later; thread-safe."""

    def __init__(self, dtype: np.dtype, elems: int, keep: int) -> None:
        import threading

        self.dtype, self.elems, self.keep = dtype, elems, keep
        self.free: list[np.ndarray] = []
        self.lock = threading.Lock()

    def take(self) -> np.ndarray:
        with self.lock:
            if self.free:
                return self.free.pop()
        return np.empty(self.elems, self.dtype)

    def give(self, buf: np.ndarray) -> None:
        with self.lock:
            if len(self.free) < self.keep:
                self.free.append(buf)
