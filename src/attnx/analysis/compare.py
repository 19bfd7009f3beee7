"""Comparing two stores of the same records: per-head cosine and max |A - B| of their maps (Kovaleva §5)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attnx._version import __version__
from attnx.analysis.blocks import block_input
from attnx.analysis.driver import as_store, require_maps
from attnx.analysis.outputs import write_grid_csv
from attnx.config import BLOCK_BYTES
from attnx.errors import StoreError
from attnx.store import AttentionStore
from attnx.threads import keeps_thread_settings


def _check_aligned(a: AttentionStore, b: AttentionStore) -> None:
    if (a.layers, a.heads) != (b.layers, b.heads):
        raise StoreError(f"{b.path}: layers/heads {b.layers}/{b.heads} differ from {a.path}: {a.layers}/{a.heads}")
    if len(a.position) != len(b.position) or not np.array_equal(a.position >= 0, b.position >= 0):
        raise StoreError(
            f"{a.path} and {b.path} do not hold the same records ({len(a)} vs {len(b)} stored): "
            "compare stores extracted from the same input"
        )
    if not np.array_equal(a.lengths, b.lengths):
        k = int(np.flatnonzero(a.lengths != b.lengths)[0])
        raise StoreError(
            f"{a.path} and {b.path} tokenize record {k} differently "
            f"({a.lengths[k]} vs {b.lengths[k]} wordpieces): same corpus and tokenizer needed"
        )


@keeps_thread_settings
def compare_stores(
    path_a: AttentionStore | str | Path,
    path_b: AttentionStore | str | Path,
    max_bytes: int = BLOCK_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Per head ``(L, H)``: mean over records of cosine(map in A, map in B) and max |A - B| (Kovaleva §5).
    Each store is a path or an open store.

    Raises :class:`StoreError` when the stores do not hold the same records with the same tokenization.
    """
    from attnx.kernels.common import kernel_input
    from attnx.kernels.compare import compare_maps

    a, b = as_store(path_a), as_store(path_b)
    for store in (a, b):
        require_maps(store, "compare")
    _check_aligned(a, b)
    L, H = a.n_layers, a.n_heads
    M = L * H
    cos = np.zeros(M)
    mad = np.zeros(M)
    n = 0
    for blk in a.blocks(max_bytes):
        pb = b.position[blk.record_ids]
        if len(pb) and np.array_equal(pb, pb[0] + np.arange(len(pb))):
            other = b.read_block(int(pb[0]), int(pb[-1]) + 1)
            if not np.array_equal(other.token_ids, blk.token_ids):
                raise StoreError(f"{a.path} and {b.path}: token ids differ for records {blk.record_ids[:3]}...")
            ib, offs_b = block_input(other), other.attn_offsets[:-1]
        else:  # physical orders differ: gather B's records one by one (correct, slower)
            maps = [b.attention(int(i)).reshape(-1) for i in blk.record_ids]
            for k, i in enumerate(blk.record_ids):
                t0, t1 = blk.tok_offsets[k], blk.tok_offsets[k + 1]
                if not np.array_equal(b.token_ids(int(i)), blk.token_ids[t0:t1]):
                    raise StoreError(f"{a.path} and {b.path}: token ids differ for record {int(i)}")
            flat = np.concatenate(maps)
            ib, offs_b = kernel_input(flat), np.concatenate([[0], np.cumsum([len(m) for m in maps])[:-1]])
        c, d = compare_maps(block_input(blk), blk.attn_offsets[:-1], ib, offs_b, blk.lengths, M)
        cos += c
        mad = np.maximum(mad, d)
        n += len(blk)
        if progress is not None:
            progress(len(blk), int(blk.attn.nbytes))
    return {
        "cosine": (cos / max(n, 1)).reshape(L, H),
        "max_abs_diff": mad.reshape(L, H),
        "records": n,
        "layers": a.layers,
        "heads": a.heads,
    }


def write_compare(result: dict, out_dir: str | Path, path_a: str | Path, path_b: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_grid_csv(
        out / "compare.csv",
        result["layers"],
        result["heads"],
        {"cosine": result["cosine"], "max_abs_diff": result["max_abs_diff"]},
    )
    about = {}
    for key, store in (("a", path_a), ("b", path_b)):
        st = as_store(store)
        about[f"model_{key}"] = (st.attrs.get("model") or {}).get("name")
        about[f"input_{key}"] = (st.attrs.get("input") or {}).get("path")
        about[f"dtype_{key}"] = st.dtype
    (out / "compare_params.json").write_text(
        json.dumps(
            {
                "store_a": str(getattr(path_a, "path", path_a)),
                "store_b": str(getattr(path_b, "path", path_b)),
                "records": result["records"],
                **about,
                "attnx_version": __version__,
            },
            indent=2,
        )
    )
    return [out / "compare.csv", out / "compare_params.json"]
