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
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec

from attnx.errors import StoreError

FORMAT = "attnx-store/2"
FORMAT_1 = "attnx-store/1"
BRANCH = "main"

# hard ceilings that no real store reaches; they bound what a crafted store can make the reader allocate
MAX_LAYERS = 1024
MAX_HEADS = 1024
MAX_LENGTH = 1 << 16
MAX_FEATURES = 1024


@dataclass(frozen=True)
class StoredDType:
    """How attention probabilities are stored: numpy dtype, decode scale, stated max abs error vs float32."""

    name: str
    numpy: np.dtype
    scale: float  # stored value * scale = probability
    max_abs_error: float  # rounding error of storage alone, against the float32 probabilities
    default_codec: str  # chosen by benchmarks/bench_codecs.py
    lossy_for_entropy: bool  # quantised: entropies/JS of tiny probabilities shift measurably


STORED_DTYPES: dict[str, StoredDType] = {
    "float32": StoredDType("float32", np.dtype(np.float32), 1.0, 0.0, "blosc-lz4", False),
    # float16 has a 10-bit mantissa: relative error 2^-11, so at most 2^-12 (2.4e-4) for p <= 0.5 and
    # 2^-11 (4.9e-4) for p in (0.5, 1]
    "float16": StoredDType("float16", np.dtype(np.float16), 1.0, 4.9e-4, "blosc-lz4", False),
    "uint8": StoredDType("uint8", np.dtype(np.uint8), 1.0 / 255.0, 1.0 / 510.0, "zstd", True),
}


def stored_dtype(name: str) -> StoredDType:
    try:
        return STORED_DTYPES[name]
    except KeyError:
        raise StoreError(f"unknown stored dtype {name!r} (choose from {', '.join(STORED_DTYPES)})") from None


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


CODECS = ("auto", "blosc-lz4", "blosc-zstd", "zstd", "none")


def resolve_codec(codec: str, dtype: str) -> str:
    """``auto``: the stored dtype's default (measured by benchmarks/bench_codecs.py).

    float16 probabilities have about 10 noisy mantissa bits, so no lossless codec gets past ~1.2x; lz4 with
    bit-shuffle comes within 1% of the best ratio at several times zstd's speed. uint8 maps are mostly small
    integers, where zstd's entropy coding wins (about 1.9x against lz4's 1.4x).
    """
    if codec == "auto":
        return stored_dtype(dtype).default_codec
    if codec not in CODECS:
        raise StoreError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")
    return codec


def codecs(codec: str, dtype: np.dtype | type, level: int = 1) -> dict:
    """Zarr v3 codec pipeline: bytes -> compressor -> crc32c (so a corrupt chunk fails on read)."""
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
