"""The store's layout: array names and dtypes, stored attention dtypes, codecs, the payload, the commit record.

One table per fact; the writer, the reader, ``verify`` and the xarray view all read these. Layout (Zarr v3
arrays in one group of an Icechunk repository; physical order = processing order, i.e. length-sorted
windows)::

    attn              (E,)  float16|float32|uint8  every record's maps back to back, each record
                                                   (layers, heads, l, l) C-order; uint8 = round(p * 255)
    features          (E,)  float32   --stats-only stores, instead of ``attn``: (layers, heads, F) per record
    rec/input_id      (n,)  int64   input-order id of the record at each physical position
    rec/attn_start    (n,)  int64   element offset of the record in ``attn`` (or ``features``)
    rec/length        (n,)  int32   l: tokens including the special tokens
    rec/len_a         (n,)  int32   tokens up to and including the first separator (= l for single sentences)
    rec/tok_start     (n,)  int64   offset of the record's tokens in ``tok/*``
    rec/line          (n,)  int64   1-based source line of the record
    rec/truncated     (n,)  bool    the input was longer than --max-length and was cut
    rec/word_start    (n,)  int64   offset of the record's words in ``words/*`` (CoNLL-U stores; else 0)
    tok/ids           (T,)  int32   token ids (``tok`` attrs hold the vocabulary)
    tok/segment       (T,)  int8    0 for segment A (and the first special token), 1 for segment B
    tok/special       (T,)  bool    special tokens ([CLS], [SEP], <s>, </s>, ...)
    tok/punct         (T,)  bool    tokens made only of punctuation
    tok/word          (T,)  int32   0-based word index within the record, -1 for special tokens
    words/head        (W,)  int32   CoNLL-U: 0-based index of the word's syntactic head, -1 for the root
    words/deprel      (W,)  int16   CoNLL-U: index into the ``deprels`` attribute
    index/position    (N,)  int64   input id -> physical position; written by the final commit
    derived/<name>/values, /offsets  per-record ragged results (e.g. rollout), physical order

Every array is 1-D with a ``dimension_names`` entry (``element``, ``record``, ``token``, ``word``,
``input_record``), so xarray opens the store as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnx.errors import StoreError
from attnx.stored_dtypes import CODECS, DTYPES, StoredDtype, zarr_codecs

FORMAT = "attnx-store/2"
FORMAT_1 = "attnx-store/1"
BRANCH = "main"

# hard ceilings that no real store reaches; they bound what a crafted store can make the reader allocate
MAX_LAYERS = 1024
MAX_HEADS = 1024
MAX_LENGTH = 1 << 16
MAX_FEATURES = 1024
# records per tokenized window: an incomplete store's input ids reach at most records + window, so this bounds
# the input-order arrays a reader allocates (8 bytes per id: 32 MiB) whatever a crafted store says
MAX_WINDOW_RECORDS = 1 << 22


# Stored attention dtypes (float32, float16, uint8, q8..q16): one table, in attnx.stored_dtypes
STORED_DTYPES: dict[str, StoredDtype] = DTYPES


def stored_dtype(name: str) -> StoredDtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise StoreError(f"unknown stored dtype {name!r} (choose from {', '.join(DTYPES)})") from None


# ---------------------------------------------------------------------------------------------------------
# Arrays: name -> (numpy dtype, dimension name). The record and token arrays grow with every commit.
# ---------------------------------------------------------------------------------------------------------
REC_ARRAYS: dict[str, type] = {
    "rec/input_id": np.int64,
    "rec/attn_start": np.int64,
    "rec/length": np.int32,
    "rec/len_a": np.int32,
    "rec/tok_start": np.int64,
    "rec/line": np.int64,
    "rec/truncated": np.bool_,
    "rec/word_start": np.int64,
}
TOK_ARRAYS: dict[str, type] = {
    "tok/ids": np.int32,
    "tok/segment": np.int8,
    "tok/special": np.bool_,
    "tok/punct": np.bool_,
    "tok/word": np.int32,
}
WORD_ARRAYS: dict[str, type] = {"words/head": np.int32, "words/deprel": np.int16}
INDEX_ARRAY = "index/position"


def small_arrays(conllu: bool) -> dict[str, type]:
    """name -> dtype of the per-record and per-token arrays (and per-word ones in CoNLL-U stores)."""
    return {**REC_ARRAYS, **TOK_ARRAYS, **(WORD_ARRAYS if conllu else {})}


def dimension(name: str) -> str:
    """The dimension name of a store array (what xarray calls its only axis)."""
    if name.startswith("rec/"):
        return "record"
    if name.startswith("tok/"):
        return "token"
    if name.startswith("words/"):
        return "word"
    if name == INDEX_ARRAY:
        return "input_record"
    if name.startswith("derived/"):
        return f"{name.split('/')[1]}_{name.split('/')[2]}"
    return "element"


@dataclass(frozen=True)
class Payload:
    """What a record's payload is, chosen once per store: the maps, or (--stats-only) their feature sums."""

    kind: str  # "maps" | "features"
    array: str  # "attn" | "features"
    features: tuple[str, ...] = ()  # feature names (features payload only)

    @classmethod
    def maps(cls) -> Payload:
        return cls("maps", "attn")

    @classmethod
    def stats(cls, features: list[str] | tuple[str, ...]) -> Payload:
        return cls("features", "features", tuple(features))

    @classmethod
    def from_attrs(cls, attrs: dict) -> Payload:
        if attrs.get("payload", "maps") == "features":
            return cls.stats(attrs.get("features", ()))
        return cls.maps()

    def to_attrs(self) -> dict:
        return {"payload": self.kind, **({"features": list(self.features)} if self.kind == "features" else {})}

    def record_sizes(self, lengths: np.ndarray, layers: int, heads: int) -> np.ndarray:
        """(n,) int64 payload elements per record: ``layers*heads*l^2`` (maps) or ``layers*heads*F``."""
        return record_sizes(lengths, layers, heads, len(self.features) if self.kind == "features" else None)


def record_sizes(lengths: np.ndarray, layers: int, heads: int, n_features: int | None) -> np.ndarray:
    """(n,) int64 payload elements per record: ``layers*heads*l^2`` for maps, ``layers*heads*F`` for features."""
    lengths = np.asarray(lengths, np.int64)
    if n_features is None:
        return layers * heads * lengths * lengths
    return np.full(len(lengths), layers * heads * n_features, np.int64)


@dataclass(frozen=True)
class Commit:
    """How much of the store one Icechunk commit holds; stored in the group attributes of that commit.

    ``input_window`` / ``input_digest``: the window (of ``window_records`` input records) holding the last
    committed record, and the sha256 of the input's content up to the end of that window; a resume
    recomputes it over what it skips and refuses a changed input.
    """

    records: int = 0
    attn: int = 0
    tokens: int = 0
    words: int = 0
    input_window: int = -1
    input_digest: str = ""

    def to_json(self) -> dict:
        return {
            "records": self.records,
            "attn": self.attn,
            "tokens": self.tokens,
            "words": self.words,
            "input_window": self.input_window,
            "input_digest": self.input_digest,
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> Commit:
        if not isinstance(value, dict):
            raise StoreError(f"{where}: attribute attnx.commit is missing or not an object")
        try:
            commit = cls(**value)
        except TypeError as exc:
            raise StoreError(f"{where}: attribute attnx.commit is malformed ({exc})") from None
        for key in ("records", "attn", "tokens", "words", "input_window"):
            v = getattr(commit, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < (-1 if key == "input_window" else 0):
                raise StoreError(f"{where}: attnx.commit.{key} = {v!r} is not a valid count")
        if not isinstance(commit.input_digest, str):
            raise StoreError(f"{where}: attnx.commit.input_digest is not a string")
        return commit


CODEC_CHOICES = ("auto", *CODECS)  # --codec: auto (the stored dtype's default) or one of the codec table


def resolve_codec(codec: str, dtype: str, level: int | None = None) -> tuple[str, int]:
    """``(codec, level)`` for the payload: ``auto`` is the stored dtype's default, measured by
    benchmarks/bench_codecs.py (floats: blosc-lz4 + bit-shuffle; uint8/q8: zstd-1; q9..q16: blosc-zstd-5 +
    bit-shuffle); an explicit codec gets ``level`` (default: that codec's usual level)."""
    d = stored_dtype(dtype)
    if codec == "auto":
        return d.codec, d.level
    if codec not in CODECS:
        raise StoreError(f"unknown codec {codec!r} (choose from {', '.join(CODEC_CHOICES)})")
    return codec, level if level is not None else (5 if codec.startswith("blosc") else 1)


def codecs(codec: str, dtype: np.dtype | type, level: int = 1) -> dict:
    """Zarr v3 codec pipeline: bytes -> compressor -> crc32c (so a corrupt chunk fails on read)."""
    try:
        return zarr_codecs(codec, np.dtype(dtype), level)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
