"""Dependency-relation heads (Clark et al. 2019, §4.2 and Table 1).

For each word with a syntactic head (CoNLL-U stores), each attention head "predicts" the word that the
dependent attends to most, among the *other* words of the sentence. Word-level attention follows Clark et
al.: attention *to* a word is summed over its wordpieces, attention *from* a word is averaged over its
wordpieces (the average does not change the arg-max, so it is not divided), special tokens ([CLS], [SEP])
are ignored. Ties go to the earliest word (uint8 stores are compared on their integer codes, so equal
attention ties exactly rather than by rounding). The fixed-offset baseline predicts the word at ``w + offset``
for every offset in ``[-max_offset, max_offset] \\ {0}``.

Accumulators (mergeable by addition): ``count (n_rel,)`` dependents per relation, ``correct (n_rel, M)``
correct predictions per relation and map (``M = layers * heads``, index ``layer * H + head``),
``offset_correct (n_rel, 2 * max_offset + 1)`` (index ``offset + max_offset``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from attnx.kernels.common import KernelInput, balanced_bounds, exact_value

MAX_OFFSET = 10


@njit(cache=True, nogil=True)
def record_relations(raw, lut, a0, l, t0, special, word, heads, rels, n_maps, max_offset,  # noqa: ANN001, ANN201
                     count, correct, offc, wrow, pieces):
    """One record: update the three accumulators. ``heads``/``rels``: (W,) of this record's words."""
    W = len(heads)
    if W == 0:
        return
    for u in range(W):
        pieces[u] = 0
    for j in range(l):
        u = word[t0 + j]
        if not special[t0 + j] and 0 <= u < W:
            pieces[u] += 1
    ll = l * l
    for w in range(W):
        h = heads[w]
        if h < 0 or h >= W or pieces[w] == 0:
            continue
        rel = rels[w]
        if rel < 0 or rel >= len(count):  # the reader refuses such stores; never write outside the accumulators
            continue
        count[rel] += 1
        o = h - w
        if -max_offset <= o <= max_offset:
            offc[rel, o + max_offset] += 1
        for m in range(n_maps):
            for u in range(W):
                wrow[u] = 0.0
            base = a0 + m * ll
            for i in range(l):
                if special[t0 + i] or word[t0 + i] != w:
                    continue
                r = base + i * l
                for j in range(l):
                    u = word[t0 + j]
                    if not special[t0 + j] and 0 <= u < W:
                        wrow[u] += exact_value(raw, r + j, lut)
            best = -1
            bv = -1.0
            for u in range(W):
                if u != w and pieces[u] > 0 and wrow[u] > bv:
                    bv = wrow[u]
                    best = u
            if best == h:
                correct[rel, m] += 1


@njit(parallel=True, nogil=True, cache=True)
def _relations_parallel(raw, lut, attn_offsets, lengths, tok_offsets, special, word, word_head, word_deprel,  # noqa: ANN001, ANN202
                        word_offsets, n_maps, n_rel, max_offset, bounds):
    n_parts = len(bounds) - 1
    count = np.zeros((n_parts, n_rel), np.int64)
    correct = np.zeros((n_parts, n_rel, n_maps), np.int64)
    offc = np.zeros((n_parts, n_rel, 2 * max_offset + 1), np.int64)
    maxw = 1
    for r in range(len(lengths)):
        maxw = max(maxw, word_offsets[r + 1] - word_offsets[r])
    for t in prange(n_parts):
        wrow = np.empty(maxw, np.float64)
        pieces = np.empty(maxw, np.int64)
        for r in range(bounds[t], bounds[t + 1]):
            w0 = word_offsets[r]
            w1 = word_offsets[r + 1]
            record_relations(raw, lut, attn_offsets[r], lengths[r], tok_offsets[r], special, word,
                             word_head[w0:w1], word_deprel[w0:w1], n_maps, max_offset,
                             count[t], correct[t], offc[t], wrow, pieces)
    c = np.zeros(n_rel, np.int64)
    k = np.zeros((n_rel, n_maps), np.int64)
    o = np.zeros((n_rel, 2 * max_offset + 1), np.int64)
    for t in range(n_parts):  # serial merge
        c += count[t]
        k += correct[t]
        o += offc[t]
    return c, k, o


def relation_counts(inp: KernelInput, attn_offsets: np.ndarray, lengths: np.ndarray, tok_offsets: np.ndarray,
                    special: np.ndarray, word: np.ndarray, word_head: np.ndarray, word_deprel: np.ndarray,
                    word_offsets: np.ndarray, n_maps: int, n_rel: int, max_offset: int = MAX_OFFSET,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relation accumulators of a block (see module docstring); arrays as in :class:`AttentionBlock`."""
    lengths = np.ascontiguousarray(lengths, np.int64)
    return _relations_parallel(
        inp.raw, inp.lut, np.ascontiguousarray(attn_offsets, np.int64), lengths,
        np.ascontiguousarray(tok_offsets, np.int64), np.ascontiguousarray(special, np.bool_),
        np.ascontiguousarray(word, np.int64), np.ascontiguousarray(word_head, np.int64),
        np.ascontiguousarray(word_deprel, np.int64), np.ascontiguousarray(word_offsets, np.int64),
        n_maps, max(n_rel, 1), max_offset, balanced_bounds(lengths),
    )
