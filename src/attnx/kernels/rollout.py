"""Attention rollout (Abnar and Zuidema 2020, "Quantifying Attention Flow in Transformers", Sec. 3).

Per record with maps ``A`` ``(layers, heads, l, l)`` (query, key): average the heads,
``Ã_i = 0.5 * mean_h A_i + 0.5 * I`` (the residual connection), and multiply over the layers,
``R = Ã_{L-1} @ ... @ Ã_1 @ Ã_0``. Row q of ``R`` (l x l) says how much input token k flows into
position q after the last stored layer. Computed in float64, returned as float32; rows sum to 1.

The numba kernel reads stored blocks directly (float16 / uint8 raw codes through the lookup tables of
:mod:`attnx.kernels.common`, float32 as is) and splits records into ranges of equal ``sum l^3``;
:func:`rollout_reference` is the slow numpy twin the tests compare it with.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from attnx.kernels.common import balanced_bounds, decode, kernel_input


def rollout_reference(maps: np.ndarray) -> np.ndarray:
    """Rollout of one record, float64 ``(l, l)``, from maps ``(layers, heads, l, l)`` (any float dtype)."""
    maps = np.asarray(maps, np.float64)
    l = maps.shape[-1]
    eye = np.eye(l)
    r = eye
    for layer in range(maps.shape[0]):
        a = 0.5 * maps[layer].mean(0) + 0.5 * eye  # (l, l)
        r = a @ r
    return r


@njit(cache=True, nogil=True)
def record_rollout(raw, lut, a0, l, n_maps_layers, heads, out, o0, a, r, tmp):  # noqa: ANN001, ANN201
    """One record: maps at ``raw[a0:]`` ((layers, heads, l, l), decoded via ``lut``) -> ``out[o0:o0+l*l]``.

    ``a``, ``r``, ``tmp``: float64 scratch of at least ``l * l``.
    """
    ll = l * l
    inv_h = 1.0 / heads
    for k in range(ll):
        r[k] = 0.0
    for i in range(l):
        r[i * l + i] = 1.0
    for layer in range(n_maps_layers):
        for k in range(ll):
            a[k] = 0.0
        base = a0 + layer * heads * ll
        for h in range(heads):
            off = base + h * ll
            for k in range(ll):
                a[k] += decode(raw, off + k, lut)
        for k in range(ll):
            a[k] *= 0.5 * inv_h
        for i in range(l):
            a[i * l + i] += 0.5
        # tmp = a @ r
        for i in range(l):
            for j in range(l):
                tmp[i * l + j] = 0.0
            for m in range(l):
                aim = a[i * l + m]
                if aim != 0.0:
                    for j in range(l):
                        tmp[i * l + j] += aim * r[m * l + j]
        for k in range(ll):
            r[k] = tmp[k]
    for k in range(ll):
        out[o0 + k] = np.float32(r[k])


@njit(parallel=True, cache=True)
def _rollout_parallel(raw, lut, attn_offsets, lengths, layers, heads, out_offsets, out, bounds):  # noqa: ANN001, ANN202
    for t in prange(len(bounds) - 1):
        lmax = 1
        for i in range(bounds[t], bounds[t + 1]):
            lmax = max(lmax, lengths[i])
        a = np.empty(lmax * lmax, np.float64)
        r = np.empty(lmax * lmax, np.float64)
        tmp = np.empty(lmax * lmax, np.float64)
        for i in range(bounds[t], bounds[t + 1]):
            record_rollout(raw, lut, attn_offsets[i], lengths[i], layers, heads, out, out_offsets[i], a, r, tmp)


def rollout_flat(
    attn: np.ndarray,
    attn_offsets: np.ndarray,
    lengths: np.ndarray,
    layers: int,
    heads: int,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rollout of a block of records.

    ``attn``: flat maps, each record ``(layers, heads, l, l)`` back to back (float16 | float32 | uint8
    with ``scale``); ``attn_offsets`` int64 ``(b+1,)``; ``lengths`` int ``(b,)``. Returns
    ``(values, offsets)``: float32 ``(sum l^2,)`` with each record's ``(l, l)`` rollout, int64 ``(b+1,)``.
    """
    lengths = np.asarray(lengths, np.int64)
    ki = kernel_input(attn, scale)
    out_offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths * lengths, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), np.float32)
    expected = np.asarray(attn_offsets[:-1]) + layers * heads * lengths * lengths
    if len(lengths) and not np.array_equal(expected, np.asarray(attn_offsets[1:])):
        raise ValueError("attn_offsets do not match layers * heads * l^2 per record")
    bounds = balanced_bounds(lengths, power=3)
    _rollout_parallel(
        ki.raw, ki.lut, np.asarray(attn_offsets, np.int64), lengths, layers, heads, out_offsets, out, bounds
    )
    return out, out_offsets
