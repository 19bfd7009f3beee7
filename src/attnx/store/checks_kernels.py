"""The numba kernels of :func:`attnx.store.checks.first_bad_map`: one pass over a block's rows per stored kind.

A module of their own so that importing the store (``attnx extract`` writes one) does not import numba; the
reader imports it with its first block. The float row sums may be reassociated (``fastmath`` reassoc and
contract only, never no-NaN: NaN must still fail the range test), which lets LLVM vectorise them: the float16
check ran at 1.4-1.8 GB/s per core in order and 2.8-3.3 reassociated (EWT store, 2-core EPYC). The order
changes a row's float32 sum by at most about l x 6e-8, far inside every stored dtype's row-sum bound.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from attnx.kernels.half import half_to_float
from attnx.store.check_codes import BAD_SUM, OUT_OF_RANGE


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _half_rows(raw, attn_offsets, lengths, n_maps, tol):  # noqa: ANN001, ANN202
    """float16 maps (as uint16 bits): a code above 0x3C00 (1.0) other than -0.0 is negative, > 1, inf or NaN."""
    for k in range(len(lengths)):
        l = lengths[k]
        a = attn_offsets[k]
        for r in range(n_maps * l):
            s = np.float32(0.0)
            bad = False
            for j in range(a + r * l, a + (r + 1) * l):
                c = raw[j]
                bad |= (c > 0x3C00) & (c != 0x8000)
                s += half_to_float(c)
            if bad:
                return k, OUT_OF_RANGE, np.float64(s)
            if not abs(np.float64(s) - 1.0) <= tol:
                return k, BAD_SUM, np.float64(s)
    return -1, 0, 1.0


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _float_rows(raw, attn_offsets, lengths, n_maps, tol):  # noqa: ANN001, ANN202
    """float32 maps: NaN fails both comparisons, so ``not (0 <= v <= 1)`` catches it."""
    for k in range(len(lengths)):
        l = lengths[k]
        a = attn_offsets[k]
        for r in range(n_maps * l):
            s = 0.0
            bad = False
            for j in range(a + r * l, a + (r + 1) * l):
                v = raw[j]
                bad |= not ((v >= 0) & (v <= 1))
                s += np.float64(v)
            if bad:
                return k, OUT_OF_RANGE, s
            if not abs(s - 1.0) <= tol:
                return k, BAD_SUM, s
    return -1, 0, 1.0


@njit(nogil=True, cache=True)
def _code_rows(raw, attn_offsets, lengths, n_maps, levels, max_error):  # noqa: ANN001, ANN202
    """Quantised maps (``p = code / levels``): codes at most ``levels``, row sums checked exactly on integers."""
    for k in range(len(lengths)):
        l = lengths[k]
        a = attn_offsets[k]
        tol = l * max_error + 1e-5
        for r in range(n_maps * l):
            s = 0
            top = 0
            for j in range(a + r * l, a + (r + 1) * l):
                c = np.int64(raw[j])
                s += c
                top = max(top, c)
            if top > levels:
                return k, OUT_OF_RANGE, s / levels
            if not abs(s / levels - 1.0) <= tol:
                return k, BAD_SUM, s / levels
    return -1, 0, 1.0
