"""Per-map attention features (Kovaleva et al. 2019, §4.1-4.3; Clark et al. 2019, §3) as a numba kernel.

For every record and every (layer, head) map ``P`` of shape ``(l, l)`` (rows = queries, summing to 1;
columns = keys) the kernel returns *row sums* of each feature, so that means are formed later as
``sum over maps / number of rows`` (every query row of every record weighted equally) and partial
results merge by addition. Row-sum features, in the order of :data:`MAP_FEATURES`:

=============  ========================================================================================
cls            sum_i P[i, 0]                         mass on [CLS]
sep            sum_i sum_{s in SEP} P[i, s]          mass on all [SEP]s (special tokens at position > 0)
sep_max        sum_i max_{s in SEP} P[i, s]          mass on the row's most-attended [SEP]
punct          sum_i sum_{j punct} P[i, j]           mass on punctuation wordpieces
self           sum_i P[i, i]
prev           sum_{i>0} P[i, i-1]                   (the first row has no previous token: adds 0)
next           sum_{i<l-1} P[i, i+1]                 (the last row has no next token: adds 0)
distance       sum_i sum_j P[i, j] |i - j|           in tokens
entropy        sum_i -sum_j P[i, j] ln P[i, j]       nats, 0 ln 0 = 0
cls_entropy    -sum_j P[0, j] ln P[0, j]             the [CLS] row only (one row per map)
max_weight     sum_i max_j P[i, j]                   "confidence" (Voita et al. 2019)
own_segment    sum_i sum_{j: seg(j) = seg(i)} P      seg = A for j < len_a, else B; = row mass for singles
col_max        max_j sum_i P[i, j]                   mass of the most-attended key column (vertical stripes)
col_top3       sum of the 3 largest column sums      mass of the 3 most-attended key columns (multi-stripe)
band2          sum_i P[i, i-2] + P[i, i+2]           mass at offsets -2 and +2 (a wider diagonal band)
col_sq         sum_j (sum_i P[i, j])^2 / l           column-mass concentration: its mean (/ l) is the
                                                     Herfindahl index sum_j c_j^2 of the column shares c_j
seg_block      sum_i sum_{j in B(i)} P[i, j]         segment-block mass: B(i) = keys in i's own segment
                                                     that are not special tokens and not within 1 of i
                                                     (spread inside the segment, no sink, no diagonal)
map_max        l * max_{i,j} P[i, j]                 the map's largest weight, once per row (its per-map
                                                     mean is the largest weight: what a panel drawn on a
                                                     0..max colour scale is normalised by)
=============  ========================================================================================

The last four exist for the learned pattern classifier (:mod:`attnx.kernels.patterns`).

The row pass also checks every row's values, nearly for free (the values are read there anyway): a weight
below 0, above ``hi`` or not a number (found with integer keys, :func:`attnx.kernels.common.check_key`, so
that fast-math cannot assume a NaN away), or a row whose sum is off 1 by more than ``tol0 + l * tol1``, flags
the record (:func:`map_features_checked`). ``attnx analyze`` relies on that instead of a separate check
pass over every block (the reader's ``check_maps``); the limits come from the stored dtype
(:func:`attnx.store.checks.map_limits`), the same rule as :func:`attnx.store.checks.first_bad_map`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from attnx.kernels.common import (
    KernelInput,
    balanced_bounds,
    bits_value,
    check_bits,
    check_key,
    decode,
    hi_key,
    plogp,
    punct_positions,
    sep_positions,
)
from attnx.kernels.names import NF, F  # the one list; kept light for the engine


@njit(cache=True, nogil=True)
def record_weights(l, la, seps, w, same, blk):  # noqa: ANN001, ANN201
    """Per-record flat weights: ``w[i*l+j] = |i - j|``, ``same[i*l+j] = 1`` if i and j share a segment,
    ``blk[i*l+j] = 1`` if they share a segment, ``|i - j| > 1`` and ``j`` is not [CLS] (0) or a [SEP]
    (``seps``: special positions > 0)."""
    for i in range(l):
        for j in range(l):
            w[i * l + j] = abs(i - j)
            s = 1.0 if (i < la) == (j < la) else 0.0
            same[i * l + j] = s
            blk[i * l + j] = s if abs(i - j) > 1 and j > 0 else 0.0
    for s in range(len(seps)):
        for i in range(l):
            blk[i * l + seps[s]] = 0.0


OUT_OF_RANGE, BAD_SUM = 1.0, 2.0  # flag[0] of a record (the codes of attnx.store.check_codes)


@njit(cache=True, nogil=True, fastmath=True)
def record_features(raw, lut, table, a0, l, la, seps, puncts, n_maps, out, w, same, blk,  # noqa: ANN001, ANN201
                    bits, hi, tol, flag):
    """Features of one record: ``n_maps`` maps of ``l x l`` starting at element ``a0`` of ``raw``.

    ``out``: (n_maps, NF) float64 row sums, written. ``w``, ``same``, ``blk``: the
    record's weights from :func:`record_weights`. ``bits``: ``raw`` as :func:`check_key` reads it; ``hi``: the
    key of the largest allowed weight. ``flag``: (2,) float64, set to (why, row sum) at the first row
    (map-major) with a weight below 0, above ``hi`` or not a number (why = 1; the sum is then NaN), or a sum
    off 1 by more than ``tol`` (why = 2); left at 0 when every row is good. ``la``: tokens of segment A
    (= l for single sentences).
    Two passes per map: a flat pass over the ``l^2`` weights (entropy through the ``p ln p`` table, distance,
    own segment: long, vectorizable loops) and a row pass (row max on raw codes, which order like the
    probabilities, and column sums), plus O(l) reads per row for the fixed positions.
    """
    ll = l * l
    nsep = len(seps)
    npun = len(puncts)
    col = np.empty(l, np.float32)  # local: provably unaliased
    fwhy = 0.0  # the check's finding, kept in registers and written to ``flag`` once
    fsum = 0.0
    rsum = np.empty(l, np.float32)  # per row of the current map: its sum and its largest bit pattern
    rmax = np.empty(l, bits.dtype)
    for m in range(n_maps):
        # slices index from 0: LLVM then drops numba's negative-index wraparound and vectorizes
        mp = raw[a0 + m * ll:a0 + (m + 1) * ll]
        mb = bits[a0 + m * ll:a0 + (m + 1) * ll]
        h = np.float32(0.0)
        d = np.float32(0.0)
        own = np.float32(0.0)
        sb = np.float32(0.0)
        for k in range(ll):  # flat pass
            p = decode(mp, k, lut)
            h -= plogp(mp, k, p, table)
            d += p * w[k]
            own += p * same[k]
            sb += p * blk[k]
        h0 = np.float32(0.0)
        for j in range(l):  # the [CLS] row's entropy
            h0 -= plogp(mp, j, decode(mp, j, lut), table)
        for j in range(l):
            col[j] = 0.0
        f_cls = 0.0
        f_sep = 0.0
        f_sepmax = 0.0
        f_pun = 0.0
        f_self = 0.0
        f_prev = 0.0
        f_next = 0.0
        f_max = 0.0
        f_band2 = 0.0
        f_gmax = 0.0
        for i in range(l):  # row pass
            row = mp[i * l:(i + 1) * l]
            brow = mb[i * l:(i + 1) * l]
            mx = brow[0]  # the largest bit pattern: the row's largest value while no sign bit is set
            rs = np.float32(0.0)  # the check's row sum
            for j in range(l):
                mx = max(mx, brow[j])
                v = decode(row, j, lut)
                col[j] += v
                rs += v
            vmx = bits_value(mx, lut)
            rsum[i] = rs
            rmax[i] = mx
            f_max += vmx
            f_gmax = max(f_gmax, vmx)
            f_cls += decode(row, 0, lut)
            f_self += decode(row, i, lut)
            if i > 0:
                f_prev += decode(row, i - 1, lut)
            if i < l - 1:
                f_next += decode(row, i + 1, lut)
            if i > 1:
                f_band2 += decode(row, i - 2, lut)
            if i < l - 2:
                f_band2 += decode(row, i + 2, lut)
            smx = np.float32(0.0)
            for s in range(nsep):
                p = decode(row, seps[s], lut)
                f_sep += p
                smx = max(smx, p)
            f_sepmax += smx
            for s in range(npun):
                f_pun += decode(row, puncts[s], lut)
        if fwhy == 0.0:  # the check, after the row pass so that its loop stays a straight line
            for i in range(l):
                key = np.uint32(rmax[i])
                if key > hi:  # NaN, inf, above the largest allowed value, or a sign bit: look at every key
                    key = np.uint32(0)
                    brow = mb[i * l:(i + 1) * l]
                    for j in range(l):
                        key = max(key, check_key(brow, j))
                if key > hi:  # before the sum is looked at: only then is every weight finite
                    fwhy = OUT_OF_RANGE
                    fsum = np.nan
                    break
                if abs(np.float64(rsum[i]) - 1.0) > tol:
                    fwhy = BAD_SUM
                    fsum = np.float64(rsum[i])
                    break
        c1 = np.float32(0.0)  # three largest column sums, c1 >= c2 >= c3
        c2 = np.float32(0.0)
        c3 = np.float32(0.0)
        csq = np.float32(0.0)
        for j in range(l):
            c = col[j]
            csq += c * c
            if c > c3:
                if c > c1:
                    c3 = c2
                    c2 = c1
                    c1 = c
                elif c > c2:
                    c3 = c2
                    c2 = c
                else:
                    c3 = c
        o = out[m]
        o[0] = f_cls
        o[1] = f_sep
        o[2] = f_sepmax
        o[3] = f_pun
        o[4] = f_self
        o[5] = f_prev
        o[6] = f_next
        o[7] = d
        o[8] = h
        o[9] = h0
        o[10] = f_max
        o[11] = own
        o[12] = c1
        o[13] = c1 + c2 + c3
        o[14] = f_band2
        o[15] = csq / l
        o[16] = sb
        o[17] = f_gmax * l
    flag[0] = fwhy
    flag[1] = fsum


@njit(parallel=True, nogil=True, cache=True)
def _features_parallel(raw, lut, table, attn_offsets, lengths, len_a, tok_offsets, special, punct,  # noqa: ANN001, ANN202
                       n_maps, bounds, bits, hi, tol0, tol1):
    b = len(lengths)
    out = np.zeros((b, n_maps, NF), np.float64)
    flags = np.zeros((b, 2), np.float64)
    maxl = 1
    for r in range(b):
        maxl = max(maxl, lengths[r])
    for t in prange(len(bounds) - 1):
        w = np.empty(maxl * maxl, np.float32)
        same = np.empty(maxl * maxl, np.float32)
        blk = np.empty(maxl * maxl, np.float32)
        for r in range(bounds[t], bounds[t + 1]):
            l = lengths[r]
            t0 = tok_offsets[r]
            seps = sep_positions(special, t0, l)
            puncts = punct_positions(special, punct, t0, l)
            record_weights(l, len_a[r], seps, w, same, blk)
            record_features(raw, lut, table, attn_offsets[r], l, len_a[r], seps, puncts, n_maps, out[r], w, same,
                            blk, bits, hi, tol0 + l * tol1, flags[r])
    return out, flags


def map_features(
    inp: KernelInput,
    attn_offsets: np.ndarray,
    lengths: np.ndarray,
    len_a: np.ndarray,
    tok_offsets: np.ndarray,
    special: np.ndarray,
    punct: np.ndarray,
    n_layers: int,
    n_heads: int,
) -> np.ndarray:
    """Row-sum features of every map of a block: ``(b, layers, heads, NF)`` float64 (see module docstring).

    ``inp``: the block's attention from :func:`attnx.analysis.blocks.block_input`; the other arrays as in
    :class:`attnx.store.AttentionBlock` (``lengths`` (b,), ``len_a`` (b,), offsets (b+1,), masks (T,)).
    Divide by ``lengths`` (or 1 for ``cls_entropy``) for per-map means.
    """
    sums, _ = map_features_checked(
        inp, attn_offsets, lengths, len_a, tok_offsets, special, punct, n_layers, n_heads, np.inf, np.inf, 0.0
    )
    return sums


def map_features_checked(
    inp: KernelInput,
    attn_offsets: np.ndarray,
    lengths: np.ndarray,
    len_a: np.ndarray,
    tok_offsets: np.ndarray,
    special: np.ndarray,
    punct: np.ndarray,
    n_layers: int,
    n_heads: int,
    hi: float,
    tol0: float,
    tol1: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`map_features` and, per record, its first bad row: ``(sums (b, L, H, NF), flags (b, 2))`` with
    ``flags[k] = (why, row sum)``, why 0 (good), 1 (a weight below 0, above ``hi`` or NaN) or 2 (a row sum off
    1 by more than ``tol0 + l * tol1``; its sum is then NaN)."""
    lengths = np.ascontiguousarray(lengths, np.int64)
    bounds = balanced_bounds(lengths)
    n_maps = n_layers * n_heads
    out, flags = _features_parallel(
        inp.raw, inp.lut, inp.plogp, np.ascontiguousarray(attn_offsets, np.int64), lengths,
        np.ascontiguousarray(np.minimum(len_a, lengths), np.int64), np.ascontiguousarray(tok_offsets, np.int64),
        np.ascontiguousarray(special, np.bool_), np.ascontiguousarray(punct, np.bool_), n_maps, bounds,
        check_bits(inp.raw), np.uint32(hi_key(inp.raw, hi)), float(tol0), float(tol1),
    )
    return out.reshape(len(lengths), n_layers, n_heads, NF), flags


def per_map_means(sums: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row sums ``(b, L, H, NF)`` -> per-map means (each row of the map weighted equally).

    ``col_max`` becomes the mean per-row mass on the most-attended column, ``map_max`` the map's largest
    weight; ``cls_entropy`` is unchanged.
    """
    l = np.asarray(lengths, np.float64).reshape(-1, 1, 1, 1)
    means = sums / l
    means[..., F["cls_entropy"]] = sums[..., F["cls_entropy"]]
    return means
