"""The attnx store: the on-disk layout, its writer and its reader. The only module that knows Zarr paths.

Layout (one Zarr v3 group; physical order = processing order, i.e. length-sorted windows)::

    attn              (E,)  float16|float32|uint8  every record's maps back to back, each record
                                                   (layers, heads, l, l) C-order; uint8 = round(p * 255)
    rec/input_id      (n,)  int64   input-order id of the record at each physical position
    rec/attn_start    (n,)  int64   element offset of the record in ``attn`` (or ``features``)
    rec/length        (n,)  int32   l: wordpieces including [CLS]/[SEP]
    rec/len_a         (n,)  int32   tokens up to and including the first [SEP] (= l for single sentences)
    rec/tok_start     (n,)  int64   offset of the record's tokens in ``tok/*``
    rec/line          (n,)  int64   1-based source line of the record
    rec/truncated     (n,)  bool    the input was longer than --max-length and was cut
    rec/word_start    (n,)  int64   offset of the record's words in ``words/*`` (CoNLL-U stores only)
    tok/ids           (T,)  int32   wordpiece ids (``tok`` attrs hold the vocabulary)
    tok/segment       (T,)  int8    0 for segment A (and [CLS]), 1 for segment B
    tok/special       (T,)  bool    [CLS], [SEP] and other special tokens
    tok/punct         (T,)  bool    wordpieces made only of punctuation
    tok/word          (T,)  int32   0-based word index within the record, -1 for special tokens
    words/head        (W,)  int32   CoNLL-U: 0-based index of the word's syntactic head, -1 for the root
    words/deprel      (W,)  int16   CoNLL-U: index into ``words`` attrs ``deprels``
    index/position    (N,)  int64   input id -> physical position (-1: not stored); written at the end
    derived/<name>    (D,)  any     per-record ragged results (e.g. rollout, l x l each), physical order

A ``--stats-only`` store has ``features`` instead of ``attn``: per record ``(layers, heads, F)`` float32 row
sums of the map features of :mod:`attnx.kernels.features` (attribute ``payload`` = "features").

Crash safety: ``attn`` is written in whole chunks only (the tail waits in memory), the small arrays are
rewritten up to the newest record at each commit, and the group attribute ``attnx.commit`` (written
atomically, last) says how many physical records and elements are valid. Anything past the commit is
ignored on read and overwritten on resume. zarr's local store replaces chunk files atomically, and a
single writer thread owns every chunk.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec

from attnx.errors import StoreError
from attnx.threads import read_ahead as _read_ahead

FORMAT = "attnx-store/1"
DTYPES = {"float16": np.float16, "float32": np.float32, "uint8": np.uint8}
UINT8_SCALE = 255.0
CODECS = ("auto", "blosc-lz4", "blosc-zstd", "zstd", "none")


def resolve_codec(codec: str, dtype: str) -> str:
    """``auto``: blosc-lz4 with bit-shuffle for float maps, zstd for uint8 (measured: benchmarks/bench_codecs.py).

    float16 probabilities have about 10 noisy mantissa bits, so no lossless codec gets past ~1.2x; lz4 with
    bit-shuffle comes within 1% of the best ratio at several times zstd's speed. uint8 maps are mostly small
    integers, where zstd's entropy coding wins (about 1.9x against lz4's 1.4x).
    """
    if codec == "auto":
        return "zstd" if dtype == "uint8" else "blosc-lz4"
    return codec


# name -> (dtype, unit): unit says which counter sizes the stream
_REC_ARRAYS = {
    "rec/input_id": np.int64,
    "rec/attn_start": np.int64,
    "rec/length": np.int32,
    "rec/len_a": np.int32,
    "rec/tok_start": np.int64,
    "rec/line": np.int64,
    "rec/truncated": np.bool_,
    "rec/word_start": np.int64,
}
_TOK_ARRAYS = {
    "tok/ids": np.int32,
    "tok/segment": np.int8,
    "tok/special": np.bool_,
    "tok/punct": np.bool_,
    "tok/word": np.int32,
}
_WORD_ARRAYS = {"words/head": np.int32, "words/deprel": np.int16}


# ----------------------------------------------------------------------------------------------------------
# What the engine hands the writer
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredBatch:
    """A batch of records in physical order, ready to append. ``b`` records, ``T`` tokens, ``W`` words."""

    attn: np.ndarray  # (sum_b layers*heads*l_b^2,) in the store dtype, records back to back
    input_id: np.ndarray  # (b,) int64
    length: np.ndarray  # (b,) int32
    len_a: np.ndarray  # (b,) int32
    line: np.ndarray  # (b,) int64
    truncated: np.ndarray  # (b,) bool
    tokens: dict[str, np.ndarray]  # "ids", "segment", "special", "punct", "word": (T,) each
    words: dict[str, np.ndarray] | None = None  # "head": (W,) int32, "deprel": (W,) str objects
    word_count: np.ndarray | None = None  # (b,) words per record


@dataclass(frozen=True)
class Commit:
    """How much of the store is valid. Written last, atomically."""

    records: int = 0
    attn: int = 0
    tokens: int = 0
    words: int = 0

    def to_json(self) -> dict:
        return {"records": self.records, "attn": self.attn, "tokens": self.tokens, "words": self.words}


PAYLOAD_ARRAY = {"maps": "attn", "features": "features"}


def record_sizes(lengths: np.ndarray, layers: int, heads: int, n_features: int | None) -> np.ndarray:
    """(n,) int64 payload elements per record: ``layers*heads*l^2`` for maps, ``layers*heads*F`` for features."""
    lengths = np.asarray(lengths, np.int64)
    if n_features is None:
        return layers * heads * lengths * lengths
    return np.full(len(lengths), layers * heads * n_features, np.int64)


def _codecs(codec: str, dtype: np.dtype, level: int) -> dict:
    """Zarr v3 codec pipeline: bytes -> compressor -> crc32c (so corrupt chunks fail on read)."""
    itemsize = np.dtype(dtype).itemsize
    if codec == "zstd":
        comp = [ZstdCodec(level=level)]
    elif codec == "blosc-zstd":
        comp = [BloscCodec(cname="zstd", clevel=level, shuffle="bitshuffle", typesize=itemsize)]
    elif codec == "blosc-lz4":
        comp = [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=itemsize)]
    elif codec == "none":
        comp = []
    else:
        raise StoreError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")
    return {"serializer": BytesCodec(), "compressors": [*comp, Crc32cCodec()]}


class _Stream:
    """An append-only 1-D array whose unwritten tail stays in memory, starting at a chunk boundary."""

    def __init__(self, array: zarr.Array, committed: int) -> None:
        self.array = array
        self.chunk = int(array.chunks[0])
        self.base = committed - committed % self.chunk  # first element held in ``tail``
        tail = np.asarray(array[self.base : committed]) if committed > self.base else np.empty(0, array.dtype)
        self._parts: list[np.ndarray] = [tail]
        self._held = len(tail)
        self.written = committed  # elements known to be on disk

    @property
    def total(self) -> int:
        return self.base + self._held

    def append(self, values: np.ndarray) -> None:
        if len(values):
            self._parts.append(np.ascontiguousarray(values, dtype=self.array.dtype))
            self._held += len(values)

    def _ensure_shape(self, end: int) -> None:
        if end > self.array.shape[0]:
            self.array.resize((max(end, 2 * self.array.shape[0], self.chunk),))

    def flush(self, partial: bool) -> None:
        """Write whole chunks; with ``partial`` also the last, partly filled one (kept in memory)."""
        if self._held == 0:
            return
        tail = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        whole = (len(tail) // self.chunk) * self.chunk
        end = whole if not partial else len(tail)
        if end > 0:
            self._ensure_shape(self.base + end)
            self.array[self.base : self.base + end] = tail[:end]
            self.written = self.base + end
        self.base += whole
        rest = tail[whole:]
        self._parts = [rest]
        self._held = len(rest)

    def truncate_shape(self) -> None:
        self.array.resize((self.total,))


def _store_attrs(group: zarr.Group) -> dict:
    attrs = group.attrs.asdict().get("attnx")
    if not isinstance(attrs, dict) or attrs.get("format") != FORMAT:
        raise StoreError(f"{str(group.store).removeprefix('file://')}: not an attnx store (no {FORMAT!r} attributes)")
    return attrs


class StoreWriter:
    """Appends ``StoredBatch``es to a new or resumed store and commits in whole batches.

    Not thread-safe: one writer thread owns it (and so every chunk).
    """

    def __init__(self, path: str | Path, group: zarr.Group, attrs: dict, commit: Commit) -> None:
        self.path = Path(path)
        self.group = group
        self.attrs = attrs
        self.commit = commit
        self.has_words = bool(attrs.get("conllu"))
        self.key = PAYLOAD_ARRAY[attrs.get("payload", "maps")]
        self.n_features = len(attrs["features"]) if attrs.get("payload") == "features" else None
        self.streams: dict[str, _Stream] = {self.key: _Stream(group[self.key], commit.attn)}
        for name in _REC_ARRAYS:
            self.streams[name] = _Stream(group[name], commit.records)
        for name in _TOK_ARRAYS:
            self.streams[name] = _Stream(group[name], commit.tokens)
        if self.has_words:
            for name in _WORD_ARRAYS:
                self.streams[name] = _Stream(group[name], commit.words)
        self.records = commit.records
        self._attn_end: list[tuple[int, int, int, int]] = []  # (records, attn, tokens, words) per record
        self._words = commit.words
        self.bytes_appended = 0
        # deprel strings -> ids, numbered by first appearance in physical order (deterministic on resume)
        self.deprels: list[str] = list(attrs.get("deprels", []))
        self._deprel_id = {d: k for k, d in enumerate(self.deprels)}
        self._deprel_first: list[int] = [0] * len(self.deprels)

    # -- creation -------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        meta: dict,
        vocab: list[str],
        dtype: str,
        codec: str,
        attn_chunk_elems: int,
        record_chunk: int,
        token_chunk: int,
        zstd_level: int = 1,
        conllu: bool = False,
        features: list[str] | None = None,
    ) -> StoreWriter:
        """Create an empty store at ``path`` (which must not exist or be an empty directory).

        ``features``: make a --stats-only store holding these per-map features (float32) instead of maps.
        """
        path = Path(path)
        if features:
            dtype = "float32"
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path}: exists and is not an attnx store; refusing to overwrite it")
        codec = resolve_codec(codec, dtype)
        if codec not in CODECS or dtype not in DTYPES:
            raise StoreError(f"unknown codec {codec!r} or dtype {dtype!r}")
        # built under a temporary name and renamed into place, so a crash never leaves a half-made store
        staging = path.with_name(f".{path.name}.creating")
        try:
            if staging.exists():
                shutil.rmtree(staging)
            group = zarr.open_group(str(staging), mode="w", zarr_format=3)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create store ({exc.strerror or exc})") from exc
        np_dtype = DTYPES[dtype]
        group.create_array(
            PAYLOAD_ARRAY["features" if features else "maps"],
            shape=(0,),
            chunks=(attn_chunk_elems,),
            dtype=np_dtype,
            fill_value=0,
            **_codecs(codec, np_dtype, zstd_level),
        )
        small = {**_REC_ARRAYS, **_TOK_ARRAYS, **(_WORD_ARRAYS if conllu else {})}
        for name, dt in small.items():
            chunk = record_chunk if name.startswith("rec/") else token_chunk
            group.create_array(name, shape=(0,), chunks=(chunk,), dtype=dt, fill_value=0, **_codecs("zstd", dt, 3))
        group["tok"].attrs["vocab"] = list(vocab)
        attrs = {
            "format": FORMAT,
            **meta,
            "dtype": dtype,
            "codec": codec,
            "zstd_level": zstd_level,
            "conllu": conllu,
            "payload": "features" if features else "maps",
            **({"features": list(features)} if features else {}),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "complete": False,
            "commit": Commit().to_json(),
        }
        group.attrs["attnx"] = attrs
        if path.exists():
            path.rmdir()  # an empty directory (checked above)
        staging.rename(path)
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        return cls(path, group, attrs, Commit())

    @classmethod
    def resume(cls, path: str | Path) -> StoreWriter:
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        attrs = _store_attrs(group)
        commit = Commit(**attrs["commit"])
        return cls(path, group, attrs, commit)

    # -- appending ------------------------------------------------------------------------------------------
    def append(self, batch: StoredBatch) -> None:
        """Append a batch; commits whenever whole ``attn`` chunks reached the disk."""
        b = len(batch.input_id)
        lengths = batch.length.astype(np.int64)
        layers, heads = len(self.attrs["layers"]), len(self.attrs["heads"])
        sizes = record_sizes(lengths, layers, heads, self.n_features)
        if int(sizes.sum()) != len(batch.attn):
            raise StoreError(f"batch attention has {len(batch.attn)} elements, lengths say {int(sizes.sum())}")
        attn_start = self.streams[self.key].total + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        tok_start = self.streams["tok/ids"].total + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        s = self.streams
        s[self.key].append(batch.attn)
        s["rec/input_id"].append(batch.input_id)
        s["rec/attn_start"].append(attn_start)
        s["rec/length"].append(batch.length)
        s["rec/len_a"].append(batch.len_a)
        s["rec/tok_start"].append(tok_start)
        s["rec/line"].append(batch.line)
        s["rec/truncated"].append(batch.truncated)
        for key, values in batch.tokens.items():
            s[f"tok/{key}"].append(values)
        if self.has_words:
            counts = batch.word_count if batch.word_count is not None else np.zeros(b, np.int64)
            word_start = self._words + np.concatenate([[0], np.cumsum(counts)[:-1]])
            s["rec/word_start"].append(word_start)
            words = batch.words or {"head": np.empty(0, np.int32), "deprel": np.empty(0, object)}
            s["words/head"].append(words["head"])
            s["words/deprel"].append(self._deprel_ids(words["deprel"], np.repeat(np.arange(b), counts)))
            word_end = word_start + counts
            self._words = int(self._words + counts.sum())
        else:
            s["rec/word_start"].append(np.zeros(b, np.int64))
            word_end = np.zeros(b, np.int64)
        ends = zip(
            range(self.records + 1, self.records + b + 1),
            (attn_start + sizes).tolist(),
            (tok_start + lengths).tolist(),
            word_end.tolist(),
            strict=True,
        )
        self._attn_end.extend(ends)
        self.records += b
        self.bytes_appended += batch.attn.nbytes
        before = s[self.key].written
        s[self.key].flush(partial=False)
        if s[self.key].written > before:
            self._commit_up_to(s[self.key].written)

    def _deprel_ids(self, names: np.ndarray, record: np.ndarray) -> np.ndarray:
        ids = np.empty(len(names), np.int16)
        for k, name in enumerate(names):
            idx = self._deprel_id.get(name)
            if idx is None:
                idx = self._deprel_id[name] = len(self.deprels)
                self.deprels.append(name)
                self._deprel_first.append(self.records + int(record[k]))
            ids[k] = idx
        return ids

    def _commit_up_to(self, attn_written: int) -> None:
        done = [e for e in self._attn_end if e[1] <= attn_written]
        if not done:
            return
        last = done[-1]
        for name, stream in self.streams.items():
            if name != self.key:
                stream.flush(partial=True)
        self._attn_end = self._attn_end[len(done) :]
        self._set_commit(Commit(records=last[0], attn=last[1], tokens=last[2], words=last[3]))

    def _set_commit(self, commit: Commit, **extra: object) -> None:
        self.commit = commit
        deprels = [d for d, first in zip(self.deprels, self._deprel_first, strict=True) if first < commit.records]
        self.attrs = {**self.attrs, "commit": commit.to_json(), "deprels": deprels, **extra}
        self.group.attrs["attnx"] = self.attrs

    def finish(self, extra_attrs: dict | None = None) -> None:
        """Write every tail, trim arrays to size, write the input-order index and mark the store complete."""
        for stream in self.streams.values():
            stream.flush(partial=True)
        final = Commit(
            records=self.records,
            attn=self.streams[self.key].total,
            tokens=self.streams["tok/ids"].total,
            words=self._words,
        )
        self._attn_end.clear()
        self._set_commit(final)  # everything is on disk: commit before trimming
        for stream in self.streams.values():
            stream.truncate_shape()
        input_id = np.asarray(self.group["rec/input_id"][: final.records])
        n_input = int(input_id.max()) + 1 if len(input_id) else 0
        position = np.full(n_input, -1, np.int64)
        position[input_id] = np.arange(len(input_id))
        if "index/position" in self.group:
            del self.group["index/position"]
        self.group.create_array(
            "index/position",
            data=position,
            chunks=(max(1, min(len(position), 1 << 20)),),
            **_codecs("zstd", np.int64, 3),
        )
        self._set_commit(final, complete=True, **(extra_attrs or {}))


class DerivedWriter:
    """Per-record ragged results written back into a complete store under ``derived/<name>``.

    Append each record's flat values in physical order (the order :meth:`AttentionStore.blocks` yields);
    ``finish`` writes ``derived/<name>/offsets`` ((n+1,) int64) and marks the array complete. ``shape`` tells
    readers how to view one record, e.g. ``"l,l"`` for an ``(l, l)`` map per record.
    """

    def __init__(self, store: AttentionStore, name: str, dtype: str, shape: str, chunk_elems: int = 4 << 20) -> None:
        if not store.complete:
            raise StoreError(f"{store.path}: derive results only from a complete store (resume it first)")
        if not name.isidentifier():
            raise StoreError(f"derived name {name!r}: use letters, digits and underscores")
        self.store, self.name, self.shape = store, name, shape
        group = zarr.open_group(str(store.path), mode="r+", zarr_format=3)
        if f"derived/{name}" in group:
            del group[f"derived/{name}"]
        np_dtype = np.dtype(dtype)
        values = group.create_array(
            f"derived/{name}/values",
            shape=(0,),
            chunks=(chunk_elems,),
            dtype=np_dtype,
            fill_value=0,
            **_codecs("blosc-lz4", np_dtype, 1),
        )
        self.group = group
        self.values = _Stream(values, 0)
        self.counts: list[int] = []

    def append(self, flat: np.ndarray, counts: np.ndarray) -> None:
        """``flat``: values of the next ``len(counts)`` records back to back; ``counts``: elements per record."""
        if int(np.sum(counts)) != len(flat):
            raise StoreError(f"derived {self.name}: {len(flat)} values for {int(np.sum(counts))} expected")
        self.values.append(flat)
        self.values.flush(partial=False)
        self.counts.extend(np.asarray(counts, np.int64).tolist())

    def finish(self, attrs: dict | None = None) -> None:
        if len(self.counts) != len(self.store):
            raise StoreError(f"derived {self.name}: {len(self.counts)} records written, store has {len(self.store)}")
        self.values.flush(partial=True)
        self.values.truncate_shape()
        offsets = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        self.group.create_array(
            f"derived/{self.name}/offsets",
            data=offsets,
            chunks=(max(1, min(len(offsets), 1 << 20)),),
            **_codecs("zstd", np.int64, 3),
        )
        self.group[f"derived/{self.name}"].attrs.update({"shape": self.shape, "complete": True, **(attrs or {})})


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionBlock:
    """A contiguous run of stored records (physical order), as plain numpy arrays for the kernels.

    ``b`` records; ``attn`` holds each record's ``(layers, heads, l, l)`` maps back to back in the stored
    dtype (uint8 means p * 255; use :meth:`maps_f32` or ``scale``). Token arrays are flat, ``tok_offsets``
    indexes them per record; word arrays likewise (CoNLL-U stores only, else empty).
    """

    first: int  # physical position of the first record
    record_ids: np.ndarray  # (b,) int64, input-order ids
    lengths: np.ndarray  # (b,) int32
    len_a: np.ndarray  # (b,) int32, tokens up to and including the first [SEP]
    attn: np.ndarray  # (sum layers*heads*l^2,) stored dtype
    attn_offsets: np.ndarray  # (b+1,) int64 offsets into attn
    scale: float  # multiply attn by this to get probabilities (1/255 for uint8, else 1)
    token_ids: np.ndarray  # (T,) int32
    segment: np.ndarray  # (T,) int8
    special: np.ndarray  # (T,) bool
    punct: np.ndarray  # (T,) bool
    word: np.ndarray  # (T,) int32
    tok_offsets: np.ndarray  # (b+1,) int64
    word_head: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))  # (W,)
    word_deprel: np.ndarray = field(default_factory=lambda: np.empty(0, np.int16))  # (W,)
    word_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # (b+1,)

    def __len__(self) -> int:
        return len(self.record_ids)

    def maps_f32(self) -> np.ndarray:
        """All maps as float32 probabilities, flat like ``attn``."""
        if self.attn.dtype == np.uint8:
            return self.attn.astype(np.float32) * np.float32(self.scale)
        return self.attn.astype(np.float32, copy=False)

    def record_maps(self, k: int, layers: int, heads: int) -> np.ndarray:
        """Record ``k`` of the block as float32 ``(layers, heads, l, l)``."""
        l = int(self.lengths[k])
        flat = self.attn[self.attn_offsets[k] : self.attn_offsets[k + 1]]
        return (flat.astype(np.float32) * np.float32(self.scale)).reshape(layers, heads, l, l)


class AttentionStore:
    """Read access to a store: O(1) random access by input id and streamed contiguous blocks.

    Records are numbered in input order: record ``i`` is the ``i``-th record of the input.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise StoreError(f"{self.path}: no attnx store here")
        try:
            self.group = zarr.open_group(str(self.path), mode="r", zarr_format=3)
        except Exception as exc:
            raise StoreError(f"{self.path}: cannot open store ({exc})") from exc
        self.attrs = _store_attrs(self.group)
        self.commit = Commit(**self.attrs["commit"])
        self.complete = bool(self.attrs.get("complete"))
        self.dtype = self.attrs["dtype"]
        self.scale = 1.0 / UINT8_SCALE if self.dtype == "uint8" else 1.0
        self.layers: list[int] = list(self.attrs["layers"])
        self.heads: list[int] = list(self.attrs["heads"])
        self.n_layers, self.n_heads = len(self.layers), len(self.heads)
        self.payload = self.attrs.get("payload", "maps")
        self.features: list[str] = list(self.attrs.get("features", []))
        self._n_features = len(self.features) if self.payload == "features" else None
        self._attn = self.group[PAYLOAD_ARRAY[self.payload]]
        self._chunk = int(self._attn.chunks[0])
        self._cache: dict[int, np.ndarray] = {}

    # -- per-record metadata (physical order, committed part only) -----------------------------------------
    def _rec(self, name: str) -> np.ndarray:
        return np.asarray(self.group[f"rec/{name}"][: self.commit.records])

    @cached_property
    def _physical(self) -> dict[str, np.ndarray]:
        return {name.split("/")[1]: self._rec(name.split("/")[1]) for name in _REC_ARRAYS}

    @cached_property
    def position(self) -> np.ndarray:
        """(N,) int64: physical position of input record i, -1 where it is not (yet) stored."""
        if self.complete and "index/position" in self.group:
            return np.asarray(self.group["index/position"][:])
        input_id = self._physical["input_id"]
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

    @cached_property
    def lengths(self) -> np.ndarray:
        """(N,) int32: wordpieces per record (input order), including [CLS]/[SEP]; 0 where not stored."""
        out = np.zeros(len(self.position), np.int32)
        stored = self.position >= 0
        out[stored] = self._physical["length"][self.position[stored]]
        return out

    def _field(self, name: str) -> np.ndarray:
        out = np.zeros(len(self.position), self._physical[name].dtype)
        stored = self.position >= 0
        out[stored] = self._physical[name][self.position[stored]]
        return out

    @cached_property
    def lines(self) -> np.ndarray:
        """(N,) int64: 1-based source line of each record (input order)."""
        return self._field("line")

    @cached_property
    def truncated(self) -> np.ndarray:
        """(N,) bool: record was cut to --max-length."""
        return self._field("truncated")

    # -- maps ------------------------------------------------------------------------------------------------
    def _read_attn(self, start: int, stop: int) -> np.ndarray:
        """Elements [start, stop) of ``attn`` through a small cache of decoded chunks."""
        c0, c1 = start // self._chunk, (stop - 1) // self._chunk
        if c0 == c1:
            chunk = self._cache.get(c0)
            if chunk is None:
                chunk = np.asarray(self._attn[c0 * self._chunk : min((c0 + 1) * self._chunk, self.commit.attn)])
                if len(self._cache) >= 4:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[c0] = chunk
            return chunk[start - c0 * self._chunk : stop - c0 * self._chunk]
        return np.asarray(self._attn[start:stop])

    def attention(self, i: int) -> np.ndarray:
        """Maps of input record ``i`` as float32 probabilities, shape ``(layers, heads, l, l)`` (query, key)."""
        if self.payload != "maps":
            raise StoreError(f"{self.path}: a --stats-only store holds features, not maps (see record_features)")
        p = self._pos(i)
        l = int(self._physical["length"][p])
        start = int(self._physical["attn_start"][p])
        flat = self._read_attn(start, start + self.n_layers * self.n_heads * l * l)
        out = flat.astype(np.float32) * np.float32(self.scale) if self.dtype == "uint8" else flat.astype(np.float32)
        return out.reshape(self.n_layers, self.n_heads, l, l)

    def record_features(self, i: int) -> np.ndarray:
        """--stats-only stores: record ``i``'s feature row sums, float32 ``(layers, heads, F)`` (see ``features``)."""
        if self.payload != "features":
            raise StoreError(f"{self.path}: holds maps, not precomputed features")
        p = self._pos(i)
        start = int(self._physical["attn_start"][p])
        n = self.n_layers * self.n_heads * len(self.features)
        return np.asarray(self._attn[start : start + n]).reshape(self.n_layers, self.n_heads, len(self.features))

    # -- tokens ------------------------------------------------------------------------------------------------
    @cached_property
    def vocab(self) -> list[str]:
        return list(self.group["tok"].attrs["vocab"])

    def _tok(self, name: str, i: int) -> np.ndarray:
        p = self._pos(i)
        start = int(self._physical["tok_start"][p])
        return np.asarray(self.group[f"tok/{name}"][start : start + int(self._physical["length"][p])])

    def token_ids(self, i: int) -> np.ndarray:
        return self._tok("ids", i)

    def tokens(self, i: int) -> list[str]:
        """Wordpiece strings of input record ``i``, [CLS] and [SEP] included."""
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

    def words(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """CoNLL-U stores: (head, deprel index) per word of record ``i``; see ``deprels``."""
        if not self.attrs.get("conllu"):
            raise StoreError(f"{self.path}: not made from CoNLL-U, no dependency annotations")
        p = self._pos(i)
        start = int(self._physical["word_start"][p])
        stop = int(self._physical["word_start"][p + 1]) if p + 1 < len(self) else self.commit.words
        return (np.asarray(self.group["words/head"][start:stop]), np.asarray(self.group["words/deprel"][start:stop]))

    @cached_property
    def deprels(self) -> list[str]:
        return list(self.attrs.get("deprels", []))

    # -- streaming ---------------------------------------------------------------------------------------------
    def plan_blocks(self, max_elems: int, records: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Physical ranges ``[p0, p1)`` of at most ``max_elems`` attention elements each (a record larger
        than that is a block of its own). ``records``: sorted physical positions to restrict to."""
        starts = self._physical["attn_start"]
        sizes = record_sizes(self._physical["length"], self.n_layers, self.n_heads, self._n_features)
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

    def read_block(self, p0: int, p1: int) -> AttentionBlock:
        """Records at physical positions [p0, p1) as one :class:`AttentionBlock`."""
        ph = self._physical
        a0 = int(ph["attn_start"][p0])
        lengths = ph["length"][p0:p1]
        sizes = record_sizes(lengths, self.n_layers, self.n_heads, self._n_features)
        attn_offsets = np.concatenate([[0], np.cumsum(sizes)])
        t0 = int(ph["tok_start"][p0])
        tok_offsets = np.concatenate([[0], np.cumsum(lengths.astype(np.int64))])
        t1 = t0 + int(tok_offsets[-1])
        g = self.group
        extra = {}
        if self.attrs.get("conllu"):
            w0 = int(ph["word_start"][p0])
            w1 = int(ph["word_start"][p1]) if p1 < len(self) else self.commit.words
            extra = dict(
                word_head=np.asarray(g["words/head"][w0:w1]),
                word_deprel=np.asarray(g["words/deprel"][w0:w1]),
                word_offsets=np.concatenate([ph["word_start"][p0:p1] - w0, [w1 - w0]]).astype(np.int64),
            )
        return AttentionBlock(
            first=p0,
            record_ids=ph["input_id"][p0:p1],
            lengths=lengths,
            len_a=ph["len_a"][p0:p1],
            attn=np.asarray(self._attn[a0 : a0 + int(attn_offsets[-1])]),
            attn_offsets=attn_offsets,
            scale=self.scale,
            token_ids=np.asarray(g["tok/ids"][t0:t1]),
            segment=np.asarray(g["tok/segment"][t0:t1]),
            special=np.asarray(g["tok/special"][t0:t1]),
            punct=np.asarray(g["tok/punct"][t0:t1]),
            word=np.asarray(g["tok/word"][t0:t1]),
            tok_offsets=tok_offsets,
            **extra,
        )

    def blocks(
        self, max_bytes: int = 64 << 20, records: np.ndarray | None = None, read_ahead: int = 2
    ) -> Iterator[AttentionBlock]:
        """Stream the store as contiguous blocks of about ``max_bytes`` of stored attention each.

        A background thread reads (and decompresses) ``read_ahead`` blocks ahead of the consumer, so
        memory stays bounded by ``(read_ahead + 2) * max_bytes`` whatever the store's size.
        ``records``: optional input-order ids to restrict to (e.g. a sample).
        """
        itemsize = np.dtype(DTYPES[self.dtype]).itemsize
        positions = None
        if records is not None:
            positions = np.sort(self.position[np.asarray(records, np.int64)])
            if (positions < 0).any():
                raise StoreError(f"{self.path}: some requested records are not stored")
        plan = self.plan_blocks(max(1, max_bytes // itemsize), positions)
        if positions is not None:
            keep = np.zeros(len(self) + 1, bool)
            keep[positions] = True
        blocks = _read_ahead(lambda: (self.read_block(p0, p1) for p0, p1 in plan), read_ahead, "attnx-block-reader")
        try:
            yield from blocks
        except (OSError, ValueError, RuntimeError) as exc:
            raise StoreError(f"{self.path}: cannot read attention ({exc})") from exc

    # -- derived results ---------------------------------------------------------------------------------------
    def derived_writer(self, name: str, dtype: str, shape: str = "l,l") -> DerivedWriter:
        """Write per-record results (e.g. attention rollout) back into this store; see :class:`DerivedWriter`."""
        return DerivedWriter(self, name, dtype, shape)

    def derived_names(self) -> list[str]:
        return sorted(self.group["derived"].group_keys()) if "derived" in self.group else []

    def derived(self, name: str, i: int) -> np.ndarray:
        """Input record ``i``'s values of ``derived/<name>``, viewed as ``(l, l)`` when stored with shape "l,l"."""
        key = f"derived/{name}"
        if key not in self.group or not self.group[key].attrs.get("complete"):
            raise StoreError(f"{self.path}: no complete derived result {name!r}")
        p = self._pos(i)
        off = self.group[f"{key}/offsets"]
        start, stop = (int(x) for x in off[p : p + 2])
        values = np.asarray(self.group[f"{key}/values"][start:stop])
        if self.group[key].attrs.get("shape") == "l,l":
            l = int(self._physical["length"][p])
            return values.reshape(l, l)
        return values

    # -- summary -----------------------------------------------------------------------------------------------
    def nbytes_stored(self) -> int:
        """Bytes on disk under the store directory."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def info(self) -> dict:
        """A JSON-able summary: sizes, model, dtype, codec, compression ratio."""
        itemsize = np.dtype(DTYPES[self.dtype]).itemsize
        raw = self.commit.attn * itemsize
        attn_disk = sum(f.stat().st_size for f in (self.path / PAYLOAD_ARRAY[self.payload]).rglob("*") if f.is_file())
        lengths = self._physical["length"]
        return {
            "path": str(self.path),
            "complete": self.complete,
            "records": len(self),
            "tokens": int(lengths.sum()),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
            "truncated": int(self._physical["truncated"].sum()),
            "layers": self.layers,
            "heads": self.heads,
            "dtype": self.dtype,
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


def open_store(path: str | Path) -> AttentionStore:
    """Open a store for reading (a complete one, or the committed part of an interrupted one)."""
    return AttentionStore(path)
