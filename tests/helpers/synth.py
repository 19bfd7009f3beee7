"""Synthetic attention for tests and benchmarks: ragged blocks and small stores built via the store API."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attnx.store import AttentionBlock, StoredBatch, StoreWriter
from attnx.stored_dtypes import encode as store_encode
from attnx.stored_dtypes import stored_dtype


def random_maps(rng: np.random.Generator, n_maps: int, l: int, sharp: float = 3.0) -> np.ndarray:
    """(n_maps, l, l) float64 row-stochastic maps: softmax of Gaussian logits times ``sharp``."""
    x = rng.standard_normal((n_maps, l, l)) * sharp
    x -= x.max(axis=-1, keepdims=True)
    p = np.exp(x)
    return p / p.sum(axis=-1, keepdims=True)


def encode(p: np.ndarray, dtype: str) -> np.ndarray:
    """Probabilities -> stored values of ``dtype`` (any of :data:`attnx.stored_dtypes.DTYPES`)."""
    if dtype == "uint8":
        return np.round(p * 255).astype(np.uint8)
    if stored_dtype(dtype).quantised:
        return store_encode(p, dtype)
    return p.astype(dtype)


def synth_records(rng, n, layers, heads, dtype="float16", lmin=2, lmax=20, pair_frac=0.3, maps_fn=None):  # noqa: ANN001, ANN201
    """Per-record dicts: attn (flat, stored dtype), length, len_a, tokens (special/punct/segment/word/ids)."""
    recs = []
    for _ in range(n):
        l = int(rng.integers(lmin, lmax + 1))
        pair = l >= 5 and rng.random() < pair_frac
        la = int(rng.integers(2, l - 2)) if pair else l
        special = np.zeros(l, bool)
        special[0] = True
        special[la - 1] = True
        special[l - 1] = True
        punct = (rng.random(l) < 0.15) & ~special
        segment = (np.arange(l) >= la).astype(np.int8)
        # words: each non-special token starts a new word with prob 0.7, else continues the previous one
        word = np.full(l, -1, np.int32)
        w = -1
        for j in range(l):
            if special[j]:
                continue
            if w < 0 or rng.random() < 0.7 or (j > 0 and special[j - 1]):
                w += 1
            word[j] = w
        maps = maps_fn(l, la) if maps_fn else random_maps(rng, layers * heads, l)
        recs.append(
            dict(
                attn=encode(maps.reshape(-1), dtype),
                length=l,
                len_a=la,
                special=special,
                punct=punct,
                segment=segment,
                word=word,
                ids=rng.integers(1000, 2000, l).astype(np.int32),
                n_words=w + 1,
            )
        )
    return recs


def block_from_records(recs, dtype="float16") -> AttentionBlock:  # noqa: ANN001
    lengths = np.array([r["length"] for r in recs], np.int32)
    sizes = np.array([len(r["attn"]) for r in recs], np.int64)
    W = [r["n_words"] for r in recs]
    rng = np.random.default_rng(0)
    heads = []
    for w in W:
        h = rng.integers(-1, w, w) if w else np.empty(0, np.int64)
        heads.append(h)
    return AttentionBlock(
        first=0,
        record_ids=np.arange(len(recs)),
        lengths=lengths,
        len_a=np.array([r["len_a"] for r in recs], np.int32),
        attn=np.concatenate([r["attn"] for r in recs]) if recs else np.empty(0, dtype),
        attn_offsets=np.concatenate([[0], np.cumsum(sizes)]),
        scale=stored_dtype(dtype).scale,
        token_ids=np.concatenate([r["ids"] for r in recs]),
        segment=np.concatenate([r["segment"] for r in recs]),
        special=np.concatenate([r["special"] for r in recs]),
        punct=np.concatenate([r["punct"] for r in recs]),
        word=np.concatenate([r["word"] for r in recs]),
        tok_offsets=np.concatenate([[0], np.cumsum(lengths.astype(np.int64))]),
        word_head=np.concatenate(heads).astype(np.int32) if heads else np.empty(0, np.int32),
        word_deprel=np.concatenate([rng.integers(0, 3, len(h)) for h in heads]).astype(np.int16),
        word_offsets=np.concatenate([[0], np.cumsum(W)]).astype(np.int64),
    )


def write_store(
    path: Path,
    recs,
    layers: int,
    heads: int,
    dtype: str = "float16",
    conllu: bool = False,  # noqa: ANN001
    batch: int = 64,
    attn_chunk_elems: int = 1 << 16,
    seed: int = 0,
) -> Path:
    """Write ``recs`` (from :func:`synth_records`) as a store through the public writer API."""
    rng = np.random.default_rng(seed)
    w = StoreWriter.create(
        path,
        meta={
            "layers": list(range(layers)),
            "heads": list(range(heads)),
            "model": {"name": "synthetic", "layers": layers, "heads": heads},
        },
        vocab=[f"t{k}" for k in range(2000)],
        dtype=dtype,
        codec="zstd",
        attn_chunk_elems=attn_chunk_elems,
        record_chunk=1024,
        token_chunk=1 << 14,
        conllu=conllu,
    )
    deprels = np.array(["nsubj", "obj", "det", "amod"], dtype=object)
    for s in range(0, len(recs), batch):
        part = recs[s : s + batch]
        b = len(part)
        words = None
        counts = None
        if conllu:
            counts = np.array([r["n_words"] for r in part], np.int64)
            head = np.concatenate([rng.integers(-1, max(c, 1), c) for c in counts]).astype(np.int32)
            words = {"head": head, "deprel": deprels[rng.integers(0, len(deprels), int(counts.sum()))]}
        w.append(
            StoredBatch(
                attn=np.concatenate([r["attn"] for r in part]),
                input_id=np.arange(s, s + b, dtype=np.int64),
                length=np.array([r["length"] for r in part], np.int32),
                len_a=np.array([r["len_a"] for r in part], np.int32),
                line=np.arange(s, s + b, dtype=np.int64) + 1,
                truncated=np.zeros(b, bool),
                tokens={
                    k: np.concatenate([r[k2] for r in part])
                    for k, k2 in (
                        ("ids", "ids"),
                        ("segment", "segment"),
                        ("special", "special"),
                        ("punct", "punct"),
                        ("word", "word"),
                    )
                },
                words=words,
                word_count=counts,
            )
        )
    w.finish()
    return path
