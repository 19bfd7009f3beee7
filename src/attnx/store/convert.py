"""``attnx convert OLD NEW``: copy a complete format-1 store (attnx 0.1, plain Zarr) into a new store."""

from __future__ import annotations

import os

import numpy as np
import zarr

from attnx.errors import StoreError
from attnx.store.append import StoredBatch
from attnx.store.layout import FORMAT_1, Payload, record_sizes
from attnx.store.location import StoreLocation
from attnx.store.writer import StoreWriter


def convert_format_1(old: str | os.PathLike, new: str | os.PathLike, batch_records: int = 4096) -> int:
    """Copy every record of the complete format-1 store ``old`` into a new store ``new``, physical order kept.

    Returns the number of records. The old store is only read (its chunks' checksums are checked on read).
    """
    src = StoreLocation.parse(old)
    if not src.is_format_1():
        raise StoreError(f"{old}: not a format-1 attnx store")
    g = zarr.open_group(src.path, mode="r", zarr_format=3)
    attrs = dict(g.attrs["attnx"])
    if attrs.get("format") != FORMAT_1 or not attrs.get("complete"):
        raise StoreError(f"{old}: only complete format-1 stores can be converted")
    n = int(attrs["commit"]["records"])
    payload = Payload.from_attrs(attrs)
    meta = {
        k: v
        for k, v in attrs.items()
        if k in ("attnx_version", "model", "tokenizer", "layers", "heads", "input", "options", "batching", "precision")
    }
    conllu = bool(attrs.get("conllu"))
    first = g[payload.array]
    writer = StoreWriter.create(
        new,
        meta,
        list(g["tok"].attrs["vocab"]),
        attrs["dtype"],
        attrs["codec"],
        int(first.chunks[0]),
        int(g["rec/length"].chunks[0]),
        int(g["tok/ids"].chunks[0]),
        int(attrs.get("zstd_level", 1)) if attrs["codec"] == "zstd" else None,
        conllu=conllu,
        payload=payload,
    )
    try:
        rec = {
            name: np.asarray(g[f"rec/{name}"][:n])
            for name in ("input_id", "length", "len_a", "line", "truncated", "tok_start", "attn_start", "word_start")
        }
        sizes = record_sizes(
            rec["length"],
            len(attrs["layers"]),
            len(attrs["heads"]),
            len(payload.features) if payload.kind == "features" else None,
        )
        deprels = np.array(attrs.get("deprels", []), dtype=object)
        for p0 in range(0, n, batch_records):
            p1 = min(n, p0 + batch_records)
            a0, a1 = int(rec["attn_start"][p0]), int(rec["attn_start"][p1 - 1] + sizes[p1 - 1])
            t0 = int(rec["tok_start"][p0])
            t1 = t0 + int(rec["length"][p0:p1].sum())
            words = counts = None
            if conllu:
                w0 = int(rec["word_start"][p0])
                w1 = int(rec["word_start"][p1]) if p1 < n else int(attrs["commit"]["words"])
                counts = np.diff(np.concatenate([rec["word_start"][p0:p1], [w1]]))
                words = {
                    "head": np.asarray(g["words/head"][w0:w1]),
                    "deprel": deprels[np.asarray(g["words/deprel"][w0:w1])],
                }
            writer.append(
                StoredBatch(
                    attn=np.asarray(g[payload.array][a0:a1]),
                    input_id=rec["input_id"][p0:p1],
                    length=rec["length"][p0:p1],
                    len_a=rec["len_a"][p0:p1],
                    line=rec["line"][p0:p1],
                    truncated=rec["truncated"][p0:p1],
                    tokens={
                        k: np.asarray(g[f"tok/{k}"][t0:t1]) for k in ("ids", "segment", "special", "punct", "word")
                    },
                    words=words,
                    word_count=counts,
                )
            )
        writer.finish({"converted_from": {"path": src.path, "format": FORMAT_1}})
    except BaseException:
        writer.close()
        raise
    return n
