"""One function per analysis over a whole store, returning plain numpy results (for studies and notebooks).

Each streams the store through the numba kernels like ``attnx analyze`` (memory bounded by ``max_bytes``)
and accepts ``sample`` (a seeded random subset of that many records) or explicit input-order ``records``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attnx.analysis.compare import compare_stores
from attnx.analysis.dispatch import analyze_store
from attnx.analysis.driver import AnalyzeParams, as_store
from attnx.analysis.outputs import feature_means, pattern_proportions, relation_table, similarity_means
from attnx.config import BLOCK_BYTES
from attnx.store import AttentionStore


def _run(store: AttentionStore | str | Path, only: tuple[str, ...], records: np.ndarray | None = None,
         **kw: object):  # noqa: ANN202
    st = as_store(store)
    return st, analyze_store(st, AnalyzeParams(only=only, **kw), records=records)


def features(store: AttentionStore | str | Path, sample: int | None = None, seed: int = 0,
             records: np.ndarray | None = None, max_bytes: int = BLOCK_BYTES) -> dict[str, np.ndarray]:
    """Mean of every features.csv column per head: name -> ``(L, H)`` float64 (Kovaleva §4; Clark §3)."""
    _, part = _run(store, ("features",), records, sample=sample, seed=seed, max_bytes=max_bytes)
    return feature_means(part)


def patterns(store: AttentionStore | str | Path, sample: int | None = None, seed: int = 0,
             records: np.ndarray | None = None, max_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """Share of maps of each pattern type per head: ``(L, H, 5)`` (Kovaleva §3, Fig. 2)."""
    _, part = _run(store, ("patterns",), records, sample=sample, seed=seed, max_bytes=max_bytes)
    return pattern_proportions(part)


def similarity(store: AttentionStore | str | Path, metric: str = "cosine", sample: int | None = None,
               seed: int = 0, records: np.ndarray | None = None, max_bytes: int = BLOCK_BYTES,
               js_records: int = 1 << 62) -> np.ndarray:
    """Head-similarity matrix ``(L*H, L*H)``, index ``layer * H + head`` (Clark §6): mean cosine of the
    flattened maps over records, or mean JS divergence (bits) of the query rows over rows."""
    _, part = _run(store, ("similarity",), records, metrics=(metric,), sample=sample, seed=seed,
                   max_bytes=max_bytes, js_records=js_records)
    return similarity_means(part)[metric]


def relations(store: AttentionStore | str | Path, sample: int | None = None, seed: int = 0,
              records: np.ndarray | None = None, max_bytes: int = BLOCK_BYTES, max_offset: int = 10) -> list[dict]:
    """Clark et al. Table 1 rows (CoNLL-U stores): relation, count, best head, accuracy, best offset."""
    st, part = _run(store, ("relations",), records, sample=sample, seed=seed, max_bytes=max_bytes,
                    max_offset=max_offset)
    return relation_table(part, st.deprels, st.n_heads, max_offset)


def compare(store_a: AttentionStore | str | Path, store_b: AttentionStore | str | Path,
            max_bytes: int = BLOCK_BYTES) -> dict[str, np.ndarray]:
    """Per head ``(L, H)``: mean cosine of the same records' maps and max |A - B| (Kovaleva §5, Fig. 5);
    each store a path or an open store."""
    return compare_stores(store_a, store_b, max_bytes=max_bytes)
