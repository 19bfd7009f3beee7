"""What a store must satisfy before anything reads it: pure checks over attributes, array metadata and the
per-record arrays. Each failure is a :class:`StoreError` naming the array (and record) at fault.

These run when a store is opened (O(records), vectorised) so that no store, however crafted, can make a kernel
read out of bounds or make attnx allocate more than the store's own chunks imply; ``attnx verify`` runs them
and then reads every chunk.
"""

from __future__ import annotations

import math

import numpy as np

from attnx.errors import StoreError
from attnx.store.layout import (
    FORMAT,
    FORMAT_1,
    MAX_FEATURES,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_LENGTH,
    MAX_WINDOW_RECORDS,
    STORED_DTYPES,
    Commit,
    Payload,
    small_arrays,
)


def check_attrs(attrs: object, where: str) -> tuple[dict, Commit]:
    """The ``attnx`` group attributes: format, dtype, layers/heads, payload, commit counts."""
    if not isinstance(attrs, dict) or attrs.get("format") not in (FORMAT, FORMAT_1):
        raise StoreError(f"{where}: not an attnx store (no {FORMAT!r} attributes)")
    if attrs["format"] == FORMAT_1:
        raise StoreError(f"{where}: a format-1 store (attnx 0.1); convert it with `attnx convert {where} NEW`")
    if attrs.get("dtype") not in STORED_DTYPES:
        raise StoreError(f"{where}: attribute dtype = {attrs.get('dtype')!r} is not a stored dtype")
    model = attrs.get("model")
    if not isinstance(model, dict):
        raise StoreError(f"{where}: attribute model is missing")
    n_layers, n_heads = model.get("layers"), model.get("heads")
    for name, value, limit in (("model.layers", n_layers, MAX_LAYERS), ("model.heads", n_heads, MAX_HEADS)):
        if not isinstance(value, int) or not 0 < value <= limit:
            raise StoreError(f"{where}: attribute {name} = {value!r} is out of range")
    for name, limit in (("layers", n_layers), ("heads", n_heads)):
        value = attrs.get(name)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and 0 <= v < limit for v in value)
            or value != sorted(set(value))
        ):
            raise StoreError(f"{where}: attribute {name} = {str(value)[:60]} is not a sorted list of indices < {limit}")
    payload = Payload.from_attrs(attrs)
    if payload.kind == "features" and not (
        0 < len(payload.features) <= MAX_FEATURES and all(isinstance(f, str) for f in payload.features)
    ):
        raise StoreError(f"{where}: attribute features is not a list of feature names")
    commit = Commit.from_json(attrs.get("commit"), where)
    batching = attrs.get("batching", {})
    window = batching.get("window_records", 1) if isinstance(batching, dict) else None
    if not isinstance(window, int) or not 0 < window <= MAX_WINDOW_RECORDS:  # it bounds the input ids of a reader
        raise StoreError(
            f"{where}: attribute batching.window_records = {str(window)[:30]} is outside 1..{MAX_WINDOW_RECORDS}"
        )
    deprels = attrs.get("deprels", [])
    if not isinstance(deprels, list) or not all(isinstance(d, str) for d in deprels):
        raise StoreError(f"{where}: attribute deprels is not a list of strings")
    check_digest(attrs, where)  # last: a field out of range is named as such
    return attrs, commit


def check_array_meta(
    name: str, shape: tuple, dtype: np.dtype, expected_dtype: np.dtype, n: int, where: str, reserved: bool = False
) -> None:
    """One array's metadata against the commit: 1-D, the layout's dtype, exactly ``n`` elements (at least ``n``
    where ``reserved``: an incomplete store of a distributed run has room reserved for shards in flight)."""
    if len(shape) != 1:
        raise StoreError(f"{where}: array {name} has shape {shape}, expected 1-D")
    if np.dtype(dtype) != np.dtype(expected_dtype):
        raise StoreError(f"{where}: array {name} has dtype {dtype}, expected {np.dtype(expected_dtype)}")
    if int(shape[0]) != n and not (reserved and int(shape[0]) > n):
        raise StoreError(f"{where}: array {name} has {shape[0]} elements, the commit says {n}")


def check_chunk_count(name: str, n: int, chunk: int, present: int, where: str) -> None:
    """Every chunk of an array must exist (writers write empty chunks too): a missing one is a fault."""
    expected = math.ceil(n / chunk) if n else 0
    if present != expected:
        raise StoreError(f"{where}: array {name} has {present} of its {expected} chunks")


def array_specs(attrs: dict, commit: Commit) -> dict[str, tuple[np.dtype, int]]:
    """name -> (dtype, elements) of every array the committed store must hold."""
    payload = Payload.from_attrs(attrs)
    specs = {payload.array: (STORED_DTYPES[attrs["dtype"]].storage, commit.attn)}
    if commit.words and not attrs.get("conllu"):
        raise StoreError("commit counts words in a store without CoNLL-U annotations")
    count = {"rec": commit.records, "tok": commit.tokens, "words": commit.words}
    for name, dt in small_arrays(bool(attrs.get("conllu"))).items():
        specs[name] = (np.dtype(dt), count[name.split("/")[0]])
    return specs


def check_records(rec: dict[str, np.ndarray], attrs: dict, commit: Commit, where: str) -> None:
    """The per-record arrays (physical order) against each other and the commit's counts."""
    n = commit.records
    length = rec["length"].astype(np.int64)
    max_length = min(int(attrs.get("options", {}).get("max_length") or MAX_LENGTH), MAX_LENGTH)

    def fail(array: str, bad: np.ndarray, problem: str) -> None:
        p = int(np.flatnonzero(bad)[0])
        rid = int(rec["input_id"][p]) if 0 <= p < len(rec["input_id"]) else p
        raise StoreError(f"{where}: rec/{array} of record {rid} (position {p}) {problem}")

    if n == 0:
        if commit.attn or commit.tokens or commit.words:
            raise StoreError(f"{where}: the commit holds no records but {commit.attn} payload elements")
        return
    bad = (length < 1) | (length > max_length)
    if bad.any():
        fail("length", bad, f"is outside 1..{max_length}")
    len_a = rec["len_a"].astype(np.int64)
    bad = (len_a < 1) | (len_a > length)
    if bad.any():
        fail("len_a", bad, "is outside 1..length")
    payload = Payload.from_attrs(attrs)
    sizes = payload.record_sizes(length, len(attrs["layers"]), len(attrs["heads"]))
    ends = np.cumsum(sizes)
    bad = rec["attn_start"] != ends - sizes
    if bad.any():
        fail("attn_start", bad, "does not follow the previous record")
    if int(ends[-1]) != commit.attn:
        raise StoreError(f"{where}: records hold {int(ends[-1])} payload elements, the commit says {commit.attn}")
    tends = np.cumsum(length)
    bad = rec["tok_start"] != tends - length
    if bad.any():
        fail("tok_start", bad, "does not follow the previous record")
    if int(tends[-1]) != commit.tokens:
        raise StoreError(f"{where}: records hold {int(tends[-1])} tokens, the commit says {commit.tokens}")
    ws = rec["word_start"]
    if attrs.get("conllu"):
        bad = (ws < 0) | (ws > commit.words) | (np.diff(ws, prepend=0) < 0)
        if bad.any():
            fail("word_start", bad, f"is not a non-decreasing offset within 0..{commit.words}")
    elif ws.any():
        fail("word_start", ws != 0, "is set in a store without CoNLL-U annotations")
    ids = rec["input_id"]
    window = int(attrs.get("batching", {}).get("window_records", 0) or 0)
    limit = n if attrs.get("complete") else n + max(window, 0)
    bad = (ids < 0) | (ids >= limit)
    if bad.any():
        fail("input_id", bad, f"is outside 0..{limit - 1}")
    dup = np.zeros(n, bool)
    order = np.argsort(ids, kind="stable")
    dup[order[1:]] = ids[order[1:]] == ids[order[:-1]]
    if dup.any():
        fail("input_id", dup, "is stored twice")
    if not attrs.get("complete"):
        return
    seen = np.zeros(n, bool)  # complete: the ids are 0..n-1, so this is bounded by the records themselves
    seen[ids] = True
    if not seen.all():
        raise StoreError(f"{where}: complete store misses input record {int(np.flatnonzero(~seen)[0])}")


def check_position(position: np.ndarray, input_id: np.ndarray, where: str) -> None:
    """``index/position`` must be the inverse of ``rec/input_id``."""
    n = len(input_id)
    if len(position) != n:
        raise StoreError(f"{where}: index/position has {len(position)} entries for {n} records")
    bad = (position < 0) | (position >= n)
    if bad.any() or not np.array_equal(input_id[position], np.arange(n)):
        i = int(np.flatnonzero(bad | (input_id[np.clip(position, 0, max(n - 1, 0))] != np.arange(n)))[0])
        raise StoreError(f"{where}: index/position of record {i} does not point at it")


# attributes that decide what the arrays mean: relabelling any of them consistently would change every result
SEALED_ATTRS = ("format", "dtype", "scale", "layers", "heads", "payload", "features", "conllu", "deprels", "commit",
                "complete", "batching", "vocab_sha256")


def attrs_digest(attrs: dict) -> str:
    """sha256 (hex) of the attributes that decide what the arrays mean (:data:`SEALED_ATTRS`, the model's layer
    and head counts, --max-length), recorded as ``attrs_sha256`` with every commit (:func:`seal`)."""
    import hashlib
    import json

    model = attrs.get("model") if isinstance(attrs.get("model"), dict) else {}
    options = attrs.get("options") if isinstance(attrs.get("options"), dict) else {}
    sealed = {k: attrs.get(k) for k in SEALED_ATTRS}
    sealed.update({"model.layers": model.get("layers"), "model.heads": model.get("heads"),
                   "options.max_length": options.get("max_length")})
    return hashlib.sha256(json.dumps(sealed, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def seal(attrs: dict) -> dict:
    """``attrs`` with their digest (:func:`attrs_digest`): what a writer stores with each commit."""
    return {**attrs, "attrs_sha256": attrs_digest(attrs)}


def check_digest(attrs: dict, where: str) -> None:
    """Icechunk keeps attributes without a checksum of their own, and an edit that keeps them self-consistent
    (heads 0..11 relabelled 1..12 with model.heads 13) passes every other check: refuse attributes that do not
    match the digest recorded with their commit. Stores made before the digest have none to check."""
    want = attrs.get("attrs_sha256")
    if want is not None and attrs_digest(attrs) != want:
        raise StoreError(f"{where}: the store's attributes do not match their recorded sha256 (they were edited or "
                         "damaged after the last commit; layers, heads, dtype or counts cannot be trusted)")


def vocab_digest(vocab: list[str]) -> str:
    """sha256 (hex) of the vocabulary as stored (a JSON list), recorded at creation as ``vocab_sha256``."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()


def check_vocab(vocab: object, attrs: dict, where: str) -> list[str]:
    """The ``tok`` vocabulary, checked against the digest recorded at creation.

    Icechunk compresses a snapshot's attributes without a checksum, so a flipped byte inside the vocabulary
    can decode to another valid token string and silently change what ``tokens(i)`` returns (found by
    flipping every 211th byte of a snapshot: 15 of 640 flips). Stores made before the digest have none to check.
    """
    if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
        raise StoreError(f"{where}: the vocabulary (tok attributes) is missing or not a list of strings")
    want = attrs.get("vocab_sha256")
    if want is not None and vocab_digest(vocab) != want:
        raise StoreError(f"{where}: the vocabulary does not match its recorded sha256 (the snapshot is damaged)")
    return vocab


def check_tokens(tok: dict[str, np.ndarray], vocab_size: int, start: int, where: str) -> None:
    """Token arrays of one block (``start`` = first token's offset): ids in the vocabulary, segments 0/1."""
    checks = (
        ("ids", (tok["ids"] < 0) | (tok["ids"] >= vocab_size), f"is outside the vocabulary (0..{vocab_size - 1})"),
        ("segment", (tok["segment"] < 0) | (tok["segment"] > 1), "is not 0 or 1"),
        ("word", tok["word"] < -1, "is below -1"),
    )
    for name, bad, problem in checks:
        if bad.any():
            raise StoreError(f"{where}: tok/{name} at token {start + int(np.flatnonzero(bad)[0])} {problem}")
