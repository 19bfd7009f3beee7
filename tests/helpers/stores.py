"""Small synthetic stores written through the store API: random batches, a writer on them, what each record holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attnx.store import StoredBatch, StoreWriter, WriterConfig, open_store

LAYERS, HEADS = 2, 3


def make_batches(seed: int, n_batches: int, per_batch: int, dtype: str, conllu: bool = False) -> list[StoredBatch]:
    """Random row-stochastic maps of mixed lengths (2..17), with tokens and, optionally, words."""
    rng = np.random.default_rng(seed)
    out, next_id = [], 0
    for _ in range(n_batches):
        lengths = np.sort(rng.integers(2, 18, per_batch)).astype(np.int32)
        maps = []
        for l in lengths:
            x = rng.random((LAYERS, HEADS, l, l))
            p = x / x.sum(-1, keepdims=True)
            maps.append((np.round(p * 255).astype(np.uint8) if dtype == "uint8" else p.astype(dtype)).ravel())
        t = int(lengths.sum())
        words = counts = None
        if conllu:
            counts = np.maximum(lengths.astype(np.int64) - 2, 0)
            w = int(counts.sum())
            words = {  # a head is -1 (root) or another word of its own record
                "head": np.concatenate([rng.integers(-1, c, c) for c in counts]).astype(np.int32),
                "deprel": np.array(rng.choice(["nsubj", "obj", "root", "amod"], w), dtype=object),
            }
        out.append(
            StoredBatch(
                attn=np.concatenate(maps),
                input_id=np.arange(next_id, next_id + per_batch)[rng.permutation(per_batch)],
                length=lengths,
                len_a=lengths.copy(),
                line=np.arange(next_id, next_id + per_batch) + 1,
                truncated=rng.random(per_batch) < 0.1,
                tokens={
                    "ids": rng.integers(0, 50, t).astype(np.int32),
                    "segment": np.zeros(t, np.int8),
                    "special": rng.random(t) < 0.2,
                    "punct": rng.random(t) < 0.1,
                    # a word index is -1 (special) or below the record's words (CoNLL-U) or tokens
                    "word": np.concatenate(
                        [
                            rng.integers(-1, max(c, 0), l)
                            for c, l in zip(counts if conllu else lengths, lengths, strict=True)
                        ]
                    ).astype(np.int32),
                },
                words=words,
                word_count=counts,
            )
        )
        next_id += per_batch
    return out


META = {
    "layers": list(range(LAYERS)),
    "heads": list(range(HEADS)),
    "model": {"name": "synthetic", "layers": LAYERS, "heads": HEADS},
}


def create(path: Path, dtype: str, conllu: bool = False, chunk: int = 997, commit_bytes: int = 1) -> StoreWriter:
    return StoreWriter.create(
        path,
        META,
        [f"t{i}" for i in range(50)],
        dtype,
        "blosc-zstd",
        attn_chunk_elems=chunk,
        record_chunk=7,
        token_chunk=13,
        conllu=conllu,
        config=WriterConfig(commit_bytes=commit_bytes),
    )


def written(path: Path, batches: list, dtype: str, conllu: bool = False):  # noqa: ANN201 - AttentionStore
    """A finished store of ``batches`` at ``path``, opened for reading."""
    w = create(path, dtype, conllu=conllu)
    for b in batches:
        w.append(b)
    w.finish()
    return open_store(path)


def expected(batches: list[StoredBatch]) -> dict[int, np.ndarray]:
    """input id -> its flat stored values."""
    out = {}
    for b in batches:
        sizes = LAYERS * HEADS * b.length.astype(np.int64) ** 2
        offs = np.concatenate([[0], np.cumsum(sizes)])
        for k, rid in enumerate(b.input_id):
            out[int(rid)] = b.attn[offs[k] : offs[k + 1]]
    return out


def make_writer_batches(path: Path, n_batches: int = 3, per_batch: int = 10) -> tuple[StoreWriter, list[StoredBatch]]:
    """A new float16 store at ``path`` committing after every append, and ``n_batches`` batches for it."""
    return create(path, "float16", commit_bytes=1), make_batches(11, n_batches, per_batch, "float16")
