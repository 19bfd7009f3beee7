"""Head-similarity accumulators (Clark et al. 2019, §6 "Clustering attention heads"; Kovaleva et al. §4.4).

For every pair of the store's heads ``(a, b)`` (``M = layers * heads``, index ``layer * H + head``):

* ``cosine``: per record, the cosine similarity of the two flattened ``l x l`` maps; summed over records
  (count = records), so the mean is the average over sentences.
* ``js``: per query row, the Jensen-Shannon divergence of the two heads' rows, base 2 (in [0, 1]),
  ``0 log 0 = 0`` and no additive smoothing (rows are used as stored); summed over rows (count = rows).
  Computed as ``JS = H(m) - (H(p) + H(q)) / 2`` with ``m = (p + q) / 2``, clamped at 0.

Cost per record: cosine ``M^2 / 2 * l^2`` multiply-adds; JS ``M^2 / 2 * l^2`` logarithms (about 20x the
cosine): use ``--sample`` for JS on large stores.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from attnx.kernels.common import KernelInput, balanced_bounds, decode

METRICS = ("cosine", "js")


@njit(cache=True, nogil=True, fastmath=True)
def _decode_record(raw, lut, a0, n, out):  # noqa: ANN001, ANN202
    src = raw[a0:a0 + n]  # slices index from 0, so LLVM can vectorize (no wraparound select)
    for k in range(n):
        out[k] = decode(src, k, lut)


@njit(cache=True, nogil=True, fastmath=True)
def record_cosine(X, n_maps, ll, acc, norms):  # noqa: ANN001, ANN201
    """Add cos(map a, map b) of one record (``X``: (n_maps * ll,) float32) to ``acc`` (M, M) float64.

    Products are float32, sums float64: fastmath lets LLVM reorder a sum, and freshly compiled and cache-loaded
    code rounded float32 sums differently (a Dask worker and the client disagreed by 4e-9 relative). A reordered
    float64 sum moves by about 1e-16 relative; ``tests/test_kernels_cache.py`` holds the two to 1e-12.
    """
    for a in range(n_maps):
        xa = X[a * ll:(a + 1) * ll]
        s = 0.0
        for k in range(ll):
            s += xa[k] * xa[k]
        norms[a] = np.sqrt(s)
    for a in range(n_maps):
        acc[a, a] += 1.0 if norms[a] > 0 else 0.0
        xa = X[a * ll:(a + 1) * ll]
        for b in range(a + 1, n_maps):
            xb = X[b * ll:(b + 1) * ll]
            s = 0.0
            for k in range(ll):
                s += xa[k] * xb[k]
            den = norms[a] * norms[b]
            c = s / den if den > 0 else 0.0
            acc[a, b] += c
            acc[b, a] += c


@njit(cache=True, nogil=True, fastmath=True)
def record_js(X, n_maps, l, acc, hrow):  # noqa: ANN001, ANN201
    """Add sum over rows of JS_2(row of a, row of b) of one record to ``acc`` (M, M) float64.

    ``hrow``: (n_maps, >= l) float64 scratch. Logarithms are float32, sums float64 (see ``record_cosine``).
    """
    ll = l * l
    inv_ln2 = 1.0 / np.log(2.0)
    for a in range(n_maps):
        for i in range(l):
            row = X[a * ll + i * l:a * ll + (i + 1) * l]
            h = 0.0
            for j in range(l):
                p = row[j]
                h -= p * np.log(max(p, np.float32(1e-30)))
            hrow[a, i] = h * inv_ln2
    for a in range(n_maps):
        for b in range(a + 1, n_maps):
            tot = 0.0
            for i in range(l):
                ra = X[a * ll + i * l:a * ll + (i + 1) * l]
                rb = X[b * ll + i * l:b * ll + (i + 1) * l]
                hm = 0.0
                for j in range(l):
                    m = np.float32(0.5) * (ra[j] + rb[j])
                    hm -= m * np.log(max(m, np.float32(1e-30)))
                js = hm * inv_ln2 - 0.5 * (hrow[a, i] + hrow[b, i])
                tot += max(js, 0.0)
            acc[a, b] += tot
            acc[b, a] += tot


@njit(parallel=True, nogil=True, cache=True)
def _similarity_parallel(raw, lut, attn_offsets, lengths, n_maps, bounds, js):  # noqa: ANN001, ANN202
    n_parts = len(bounds) - 1
    acc = np.zeros((n_parts, n_maps, n_maps), np.float64)
    maxl = 1
    for r in range(len(lengths)):
        maxl = max(maxl, lengths[r])
    for t in prange(n_parts):
        X = np.empty(n_maps * maxl * maxl, np.float32)
        norms = np.empty(n_maps, np.float64)
        hrow = np.empty((n_maps, maxl), np.float64)
        for r in range(bounds[t], bounds[t + 1]):
            l = lengths[r]
            _decode_record(raw, lut, attn_offsets[r], n_maps * l * l, X)
            if js:
                record_js(X, n_maps, l, acc[t], hrow)
            else:
                record_cosine(X, n_maps, l * l, acc[t], norms)
    out = np.zeros((n_maps, n_maps), np.float64)
    for t in range(n_parts):  # serial merge
        out += acc[t]
    return out


def head_similarity(inp: KernelInput, attn_offsets: np.ndarray, lengths: np.ndarray, n_maps: int,
                    metric: str = "cosine") -> tuple[np.ndarray, float]:
    """Sum over a block of the per-record head-pair similarity: ``((M, M) float64 sum, count)``.

    metric ``cosine``: count = records; ``js``: count = query rows (see module docstring). The mean over a
    store is ``sum of sums / sum of counts``.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    lengths = np.ascontiguousarray(lengths, np.int64)
    js = metric == "js"
    bounds = balanced_bounds(lengths, power=2)
    acc = _similarity_parallel(inp.raw, inp.lut, np.ascontiguousarray(attn_offsets, np.int64), lengths,
                               n_maps, bounds, js)
    count = float(lengths.sum()) if js else float(len(lengths))
    return acc, count
