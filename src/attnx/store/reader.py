"""Reading a store: one committed Icechunk snapshot, validated before anything reads it.

Every public read of a store (records, tokens, words, blocks, derived results, history, sizes) is a method of
the one class that validated the snapshot, so none can bypass the validation; the work behind them lives in
:mod:`~attnx.store.array_reads` (element ranges with one-line errors), :mod:`~attnx.store.block_plan` (which
records form each streamed block), :mod:`~attnx.store.derived` and :mod:`~attnx.store.summary` (history, bytes).

``AttentionStore`` opens the newest commit of the store's branch (or a given snapshot) and never sees a
half-written batch; a writer may be appending meanwhile. Opening checks the attributes, every array's
metadata and chunk count, and the per-record arrays (:mod:`attnx.store.validate`); every later read that
fails (a missing or corrupt chunk) raises a one-line :class:`StoreError` naming the array and record.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property

import numpy as np
import zarr

from attnx.config import BLOCK_BYTES
from attnx.errors import StoreError
from attnx.store import checks, validate
from attnx.store.array_reads import ArrayReads, open_arrays
from attnx.store.block import AttentionBlock
from attnx.store.block_plan import BlockBuffers, plan_blocks
from attnx.store.derived import DerivedWriter, check_derived, read_derived
from attnx.store.layout import BRANCH, INDEX_ARRAY, REC_ARRAYS, STORED_DTYPES, Commit, Payload
from attnx.store.location import StoreLocation, _first_line
from attnx.store.summary import commit_history, store_nbytes
from attnx.store.writer import open_repository
from attnx.threads import ordered_map, usable_cores
from attnx.threads import read_ahead as _read_ahead


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
        self._reads = ArrayReads(self._arrays, self.payload_kind.array, self.path)
        self._attn = self._arrays[self.payload_kind.array]
        validate.check_records(self._physical, self.attrs, self.commit, self.path)

    def _open_arrays(self) -> dict[str, zarr.Array]:
        specs = validate.array_specs(self.attrs, self.commit)
        if self.complete:
            specs[INDEX_ARRAY] = (np.dtype(np.int64), self.commit.records)
        return open_arrays(self.group, self.session, specs, not self.complete, self.path)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        model = self.attrs.get("model", {}).get("name", "?")
        return (
            f"<AttentionStore {self.path!r}: {len(self)} records, {state}, {self.dtype} {self.payload}, "
            f"{self.n_layers} layers x {self.n_heads} heads of {model}, snapshot {self.snapshot_id}>"
        )

    # -- per-record metadata (physical order, committed part only) -----------------------------------------
    @cached_property
    def _physical(self) -> dict[str, np.ndarray]:
        n = self.commit.records
        return {name.split("/")[1]: self._reads.read(name, 0, n, lambda: "record table") for name in REC_ARRAYS}

    @cached_property
    def position(self) -> np.ndarray:
        """(N,) int64: physical position of input record i, -1 where it is not (yet) stored."""
        input_id = self._physical["input_id"]
        if self.complete:
            position = self._reads.read(INDEX_ARRAY, 0, self.commit.records, lambda: "input index")
            validate.check_position(position, input_id, self.path)
            return position
        position = np.full(int(input_id.max()) + 1 if len(input_id) else 0, -1, np.int64)
        position[input_id] = np.arange(len(input_id))
        return position

    @property
    def physical_ids(self) -> np.ndarray:
        """(n,) int64, read-only: the input id of the record at each physical position, the order in which the
        records are stored and :meth:`blocks` streams them (length-sorted within each window of the input)."""
        return _read_only(self._physical["input_id"])

    @property
    def physical_payload_nbytes(self) -> np.ndarray:
        """(n,) int64: stored payload bytes (maps or --stats-only features, uncompressed) of the record at each
        physical position, as :attr:`physical_ids` orders them."""
        sizes = self.payload_kind.record_sizes(self._physical["length"], self.n_layers, self.n_heads)
        return sizes.astype(np.int64) * STORED_DTYPES[self.dtype].storage.itemsize

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
        name, end = self.payload_kind.array, self.commit.attn
        return self._reads.read_cached(name, start, stop, end, lambda: f"record {record}")

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
        values = self._reads.read(f"tok/{name}", start, start + int(self._physical["length"][p]), lambda: f"record {i}")
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
        head = self._reads.read("words/head", start, stop, lambda: f"record {i}")
        deprel = self._reads.read("words/deprel", start, stop, lambda: f"record {i}")
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
        ends = starts + self.payload_kind.record_sizes(self._physical["length"], self.n_layers, self.n_heads)
        return plan_blocks(starts, ends, np.arange(len(self)) if records is None else np.asarray(records), max_elems)

    def read_block(
        self, p0: int, p1: int, out: np.ndarray | None = None, check_maps: bool = True
    ) -> AttentionBlock:
        """Records at physical positions [p0, p1) as one :class:`AttentionBlock`; ``out``: a 1-D buffer of the
        payload's dtype, at least the block's payload long, that the block's ``attn`` is decoded into (a view).
        ``check_maps=False``: the maps' values are not checked here (the caller checks them; every other array
        still is)."""
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
        *tok_values, attn = self._reads.read_many([*((f"tok/{n}", t0, t1) for n in names),
                                             (self.payload_kind.array, a0, a1)], what, out)
        tok = dict(zip(names, tok_values, strict=True))
        validate.check_tokens(tok, len(self.vocab), t0, self.path)
        extra = {}
        if self.attrs.get("conllu"):
            w0 = int(ph["word_start"][p0])
            w1 = int(ph["word_start"][p1]) if p1 < len(self) else self.commit.words
            extra = dict(
                word_head=self._reads.read("words/head", w0, w1, what),
                word_deprel=self._reads.read("words/deprel", w0, w1, what),
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
        checks.check_block(
            block, self.dtype, self.payload, len(self.vocab), len(self.deprels), self.path, maps=check_maps
        )
        return block

    def blocks(
        self,
        max_bytes: int = BLOCK_BYTES,
        records: np.ndarray | None = None,
        read_ahead: int = 2,
        threads: int | None = None,
        reuse: bool = False,
        check_maps: bool = True,
    ) -> Iterator[AttentionBlock]:
        """Stream the store as contiguous blocks of about ``max_bytes`` of stored attention each, in order.

        ``threads`` reader threads (default: the usable cores, at most 4) read and decompress blocks ahead of
        the consumer (blosc, zstd and crc32c release the GIL, so decoding scales with the cores), at most
        ``read_ahead + threads`` blocks in flight: memory stays bounded by about that many times
        ``max_bytes`` whatever the store's size. ``records``: optional input-order ids to restrict to.

        ``reuse``: decode into a few buffers that are used again, so a block's ``attn`` is valid only until the
        next block is requested (for consumers that reduce each block, like ``analyze``). ``check_maps=False``:
        the maps' values are left to the consumer, which must check them (``analyze`` does so inside its feature
        kernel, where the values are decoded anyway: :func:`attnx.store.checks.raise_flagged_map`). A fresh 64 MB array
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
        threads = threads if threads is not None else min(4, usable_cores())
        pool = BlockBuffers(self._attn.dtype, max((self._span(*r) for r in plan), default=0),
                        read_ahead + max(threads, 1) + 1) if reuse else None

        def read(span: tuple[int, int]) -> tuple[AttentionBlock, np.ndarray | None]:
            buf = pool.take() if pool else None
            return self.read_block(*span, out=buf, check_maps=check_maps), buf

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
        if not self.complete:
            raise StoreError(f"{self.path}: derive results only from a complete store (resume it first)")
        return DerivedWriter(self.location, self.repo, len(self), name, dtype, shape)

    def derived_names(self) -> list[str]:
        return sorted(self.group["derived"].group_keys()) if "derived" in self.group else []

    def derived(self, name: str, i: int) -> np.ndarray:
        """Input record ``i``'s values of ``derived/<name>``, viewed as ``(l, l)`` when stored with shape "l,l"."""
        check_derived(self.group, name, self.path)
        p = self._pos(i)
        return read_derived(self.group, name, p, int(self._physical["length"][p]), len(self), i, self.path)

    # -- summary -----------------------------------------------------------------------------------------------
    def history(self, limit: int | None = None) -> list[dict]:
        """The store's commits, newest first: snapshot id, time (UTC), message, records after it and added;
        ``limit``: only the newest that many (a long run's hundreds of snapshots each cost a read)."""
        return commit_history(self.repo, self.snapshot_id, self.path, limit)

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


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def open_store(where: str | os.PathLike | StoreLocation, snapshot: str | None = None) -> AttentionStore:
    """Open a store for reading: the newest commit (a complete store, or the committed part of a running or
    interrupted one), or ``snapshot``."""
    return AttentionStore(where, snapshot)


__all__ = ["AttentionBlock", "AttentionStore", "Commit", "open_store", "store_nbytes"]
