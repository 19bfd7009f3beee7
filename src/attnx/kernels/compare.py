"""Cross-store comparison of the same records' maps (Kovaleva et al. 2019, §5, Figure 5).

Per map (``M = layers * heads``): the sum over records of the cosine similarity of the flattened maps of
store A and store B, and the maximum absolute difference of any weight.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from attnx.kernels.common import KernelInput, balanced_bounds, decode


@njit(cache=True, nogil=True, fastmath=True)
def record_compare(ra, lut_a, rb, lut_b, a0, b0, n_maps, ll, cos, mad):  # noqa: ANN001, ANN201
    """One record: add cos(A_m, B_m) to ``cos[m]`` and raise ``mad[m]`` to max |A_m - B_m|."""
    for m in range(n_maps):
        xa = ra[a0 + m * ll:a0 + (m + 1) * ll]  # slices index from 0: vectorizable
        xb = rb[b0 + m * ll:b0 + (m + 1) * ll]
        sab = np.float32(0.0)
        saa = np.float32(0.0)
        sbb = np.float32(0.0)
        mx = np.float32(0.0)
        for k in range(ll):
            x = decode(xa, k, lut_a)
            y = decode(xb, k, lut_b)
            sab += x * y
            saa += x * x
            sbb += y * y
            mx = max(mx, abs(x - y))
        den = np.sqrt(saa) * np.sqrt(sbb)
        cos[m] += sab / den if den > 0 else 0.0
        mad[m] = max(mad[m], mx)


@njit(parallel=True, nogil=True, cache=True)
def _compare_parallel(ra, lut_a, off_a, rb, lut_b, off_b, lengths, n_maps, bounds):  # noqa: ANN001, ANN202
    n_parts = len(bounds) - 1
    cos = np.zeros((n_parts, n_maps), np.float64)
    mad = np.zeros((n_parts, n_maps), np.float64)
    for t in prange(n_parts):
        for r in range(bounds[t], bounds[t + 1]):
            l = lengths[r]
            record_compare(ra, lut_a, rb, lut_b, off_a[r], off_b[r], n_maps, l * l, cos[t], mad[t])
    c = np.zeros(n_maps, np.float64)
    d = np.zeros(n_maps, np.float64)
    for t in range(n_parts):
        c += cos[t]
        d = np.maximum(d, mad[t])
    return c, d


def compare_maps(a: KernelInput, off_a: np.ndarray, b: KernelInput, off_b: np.ndarray, lengths: np.ndarray,
                 n_maps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per map ``(M,)``: (sum over records of cosine(A, B), max |A - B|). Records must correspond 1:1.

    off_a / off_b: ``(b,)`` element offsets of each record in ``a.raw`` / ``b.raw``.
    """
    lengths = np.ascontiguousarray(lengths, np.int64)
    return _compare_parallel(a.raw, a.lut, np.ascontiguousarray(off_a, np.int64), b.raw, b.lut,
                             np.ascontiguousarray(off_b, np.int64), lengths, n_maps, balanced_bounds(lengths))
