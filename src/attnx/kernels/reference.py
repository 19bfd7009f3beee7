"""Slow, obviously-correct numpy (float64) twins of every kernel, for tests and benchmarks.

Each takes the same block arrays as its kernel and returns the same thing; they decode the stored
attention with plain numpy and loop over records, maps and rows in Python.
"""

from __future__ import annotations

import numpy as np

from attnx.kernels.names import NF


def decode_f64(attn: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Flat stored attention -> float64 probabilities: integer codes (uint8, and q9..q16 as uint16) times
    ``scale``, floats as they are."""
    out = attn.astype(np.float64)
    if np.issubdtype(attn.dtype, np.integer):
        out *= float(scale)
    return out


def _entropy(row: np.ndarray) -> float:
    nz = row[row > 0]
    return float(-(nz * np.log(nz)).sum())


def map_features_ref(attn, scale, attn_offsets, lengths, len_a, tok_offsets, special, punct,  # noqa: ANN001
                     n_layers: int, n_heads: int) -> np.ndarray:
    """Reference of :func:`attnx.kernels.features.map_features`: ``(b, L, H, NF)`` float64 row sums."""
    p_all = decode_f64(attn, scale)
    b = len(lengths)
    out = np.zeros((b, n_layers, n_heads, NF))
    for r in range(b):
        l, la = int(lengths[r]), int(min(len_a[r], lengths[r]))
        t0 = int(tok_offsets[r])
        sp = np.asarray(special[t0:t0 + l], bool)
        seps = np.flatnonzero(sp & (np.arange(l) > 0))
        puncts = np.flatnonzero(np.asarray(punct[t0:t0 + l], bool) & ~sp)
        maps = p_all[attn_offsets[r]:attn_offsets[r + 1]].reshape(n_layers, n_heads, l, l)
        seg = (np.arange(l) >= la).astype(int)
        same = seg[:, None] == seg[None, :]
        dist = np.abs(np.arange(l)[:, None] - np.arange(l)[None, :])
        for a in range(n_layers):
            for h in range(n_heads):
                P = maps[a, h]
                o = out[r, a, h]
                o[0] = P[:, 0].sum()
                o[1] = P[:, seps].sum()
                o[2] = P[:, seps].max(axis=1).sum() if len(seps) else 0.0
                o[3] = P[:, puncts].sum()
                o[4] = np.trace(P)
                o[5] = sum(P[i, i - 1] for i in range(1, l))
                o[6] = sum(P[i, i + 1] for i in range(l - 1))
                o[7] = (P * dist).sum()
                o[8] = sum(_entropy(P[i]) for i in range(l))
                o[9] = _entropy(P[0])
                o[10] = P.max(axis=1).sum()
                o[11] = (P * same).sum()
                cols = np.sort(P.sum(axis=0))[::-1]
                o[12] = cols[0]
                o[13] = cols[:3].sum()
                o[14] = sum(P[i, i - 2] for i in range(2, l)) + sum(P[i, i + 2] for i in range(l - 2))
                o[15] = (P.sum(axis=0) ** 2).sum() / l
                blk = same & (dist > 1)
                blk[:, 0] = False
                blk[:, seps] = False
                o[16] = (P * blk).sum()
                o[17] = l * P.max()
    return out


def similarity_ref(attn, scale, attn_offsets, lengths, n_maps: int, metric: str) -> tuple[np.ndarray, float]:
    """Reference of :func:`attnx.kernels.similarity.head_similarity`: (sum over records or rows, count).

    cosine: sum over records of cos(flat map a, flat map b), count = records.
    js: sum over query rows of JS_2(P_a[i], P_b[i]) (base 2, 0 log 0 = 0), count = rows.
    """
    p_all = decode_f64(attn, scale)
    acc = np.zeros((n_maps, n_maps))
    count = 0.0
    for r in range(len(lengths)):
        l = int(lengths[r])
        X = p_all[attn_offsets[r]:attn_offsets[r + 1]].reshape(n_maps, l * l)
        if metric == "cosine":
            for a in range(n_maps):
                for b in range(n_maps):
                    na, nb = np.linalg.norm(X[a]), np.linalg.norm(X[b])
                    acc[a, b] += float(np.dot(X[a], X[b]) / (na * nb)) if na > 0 and nb > 0 else 0.0
            count += 1
        else:
            R = X.reshape(n_maps, l, l)
            for a in range(n_maps):
                for b in range(n_maps):
                    acc[a, b] += sum(js_row(R[a, i], R[b, i]) for i in range(l))
            count += l
    return acc, count


def js_row(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions, base 2, 0 log 0 = 0, no smoothing."""
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def compare_ref(attn_a, scale_a, attn_b, scale_b, attn_offsets, lengths, n_maps: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference of :func:`attnx.kernels.compare.compare_maps`: per-map (sum of cosines, max |a - b|)."""
    pa, pb = decode_f64(attn_a, scale_a), decode_f64(attn_b, scale_b)
    cos = np.zeros(n_maps)
    mad = np.zeros(n_maps)
    for r in range(len(lengths)):
        l = int(lengths[r])
        A = pa[attn_offsets[r]:attn_offsets[r + 1]].reshape(n_maps, l * l)
        B = pb[attn_offsets[r]:attn_offsets[r + 1]].reshape(n_maps, l * l)
        for m in range(n_maps):
            na, nb = np.linalg.norm(A[m]), np.linalg.norm(B[m])
            cos[m] += float(A[m] @ B[m] / (na * nb)) if na > 0 and nb > 0 else 0.0
            mad[m] = max(mad[m], float(np.abs(A[m] - B[m]).max()))
    return cos, mad


def relations_ref(attn, scale, attn_offsets, lengths, tok_offsets, special, word, word_head, word_deprel,  # noqa: ANN001
                  word_offsets, n_maps: int, n_rel: int, max_offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference of :func:`attnx.kernels.relations.relation_counts` (Clark et al. 2019, §4.2).

    Returns ``count (n_rel,)``, ``correct (n_rel, n_maps)``, ``offset_correct (n_rel, 2*max_offset+1)``.
    Word-level map: rows averaged over a word's wordpieces, columns summed; special tokens dropped.
    Prediction of a dependent: the other word with the largest attention (first on ties; uint8 maps are
    compared on their integer codes, which the 1/255 scale does not reorder).
    """
    p_all = attn.astype(np.float64) if attn.dtype == np.uint8 else decode_f64(attn, scale)
    count = np.zeros(max(n_rel, 1), np.int64)
    correct = np.zeros((max(n_rel, 1), n_maps), np.int64)
    off = np.zeros((max(n_rel, 1), 2 * max_offset + 1), np.int64)
    for r in range(len(lengths)):
        l = int(lengths[r])
        t0 = int(tok_offsets[r])
        wid = [int(x) for x in word[t0:t0 + l]]
        sp = [bool(x) for x in special[t0:t0 + l]]
        w0, w1 = int(word_offsets[r]), int(word_offsets[r + 1])
        W = w1 - w0
        pieces = [sum(1 for j in range(l) if not sp[j] and wid[j] == u) for u in range(W)]
        maps = p_all[attn_offsets[r]:attn_offsets[r + 1]].reshape(n_maps, l, l)
        for w in range(W):
            h, rel = int(word_head[w0 + w]), int(word_deprel[w0 + w])
            if h < 0 or h >= W or pieces[w] == 0:
                continue
            count[rel] += 1
            if -max_offset <= h - w <= max_offset:
                off[rel, h - w + max_offset] += 1
            for m in range(n_maps):
                to_word = np.zeros(W)  # summed over the target's pieces, from all of w's pieces
                for i in range(l):
                    if sp[i] or wid[i] != w:
                        continue
                    for j in range(l):
                        if not sp[j] and 0 <= wid[j] < W:
                            to_word[wid[j]] += maps[m, i, j]
                candidates = [u for u in range(W) if u != w and pieces[u] > 0]
                if candidates and max(candidates, key=lambda u: (to_word[u], -u)) == h:
                    correct[rel, m] += 1
    return count, correct, off


def pattern_proba_ref(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                      intercept: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reference of :meth:`attnx.kernels.pattern_model.PatternModel.proba`: design features ``(n, D)`` ->
    ``(n, K)`` softmax probabilities, one map and one class at a time with ``math.exp`` (features clipped
    to ``[lo, hi]`` first)."""
    import math

    x = np.asarray(x, np.float64).reshape(-1, len(mean))
    x = np.array([[min(max(float(v), float(lo[d])), float(hi[d])) for d, v in enumerate(row)] for row in x])
    out = np.zeros((len(x), len(intercept)))
    for m in range(len(x)):
        z = [float(intercept[k]) + sum(float(coef[k, d]) * (float(x[m, d]) - float(mean[d])) / float(scale[d])
                                       for d in range(len(mean))) for k in range(len(intercept))]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        out[m] = [v / sum(e) for v in e]
    return out
