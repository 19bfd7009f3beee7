"""Shared pieces of the numba kernels: decoding stored probabilities, p*log(p) tables, work splitting.

Stored attention is float16, float32 or uint8 (``p * 255``). numba has no float16 on the CPU, so float16
and uint8 blocks are handed to the kernels as their raw integer codes (``uint16`` / ``uint8``) together
with lookup tables indexed by the code: the probability ``p`` (float32; float16 codes are instead
converted in registers, see :func:`half_to_float`) and ``p * ln p`` (float32, 0 for ``p == 0``). The
second table makes row entropy one table read per element instead of a ``log``, which is what bounds a naive
kernel (0.57 GB/s on the reference 2-core machine); it is exact to float32
rounding of each term. float32 blocks are read directly and take the ``log`` path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
from numba import njit, types
from numba.extending import overload

from attnx.kernels.half import bits_to_float, half_to_float


@cache
def tables(kind: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(p, p ln p)`` float32 lookup tables for raw codes of ``kind`` ("float16" or "uint8").

    float16: 65,536 entries indexed by the bit pattern (NaN/inf codes map to 0); uint8: 256 entries
    ``p = code * scale``. ``p ln p`` is computed in float64 and rounded once.
    """
    if kind == "float16":
        p64 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)
    elif kind == "uint8":
        p64 = np.arange(256, dtype=np.float64) * float(scale)
    else:
        raise ValueError(f"no lookup table for {kind!r}")
    p64 = np.where(np.isfinite(p64), p64, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p64 > 0, p64 * np.log(np.where(p64 > 0, p64, 1.0)), 0.0)
    return p64.astype(np.float32), plogp.astype(np.float32)


@dataclass(frozen=True)
class KernelInput:
    """Stored attention in the form the kernels read: raw codes plus the tables that decode them."""

    raw: np.ndarray  # (E,) uint16 (float16 bit patterns) | uint8 | float32
    lut: np.ndarray  # (65536,) | (256,) float32 p per code; (1,) unused for float32
    plogp: np.ndarray  # same length as lut: p ln p per code (nats)

    @property
    def nbytes(self) -> int:
        return int(self.raw.nbytes)


def kernel_input(attn: np.ndarray, scale: float = 1.0) -> KernelInput:
    """Wrap a flat attention array (float16 / float32 / uint8 with ``scale``) for the kernels, zero-copy;
    uint16 (q9..q16) codes are decoded to float32 first (the kernels' uint16 path means float16 bits)."""
    if attn.dtype == np.float16:
        lut, plogp = tables("float16")
        return KernelInput(attn.view(np.uint16), lut, plogp)
    if attn.dtype == np.uint8:
        lut, plogp = tables("uint8", float(scale))
        return KernelInput(attn, lut, plogp)
    if attn.dtype == np.float32:
        dummy = np.zeros(1, np.float32)
        return KernelInput(attn, dummy, dummy)
    if attn.dtype == np.float64:
        return kernel_input(attn.astype(np.float32), scale)
    if attn.dtype == np.uint16:  # q9..q16 codes (float16 arrays arrive as float16): decode once to float32
        out = np.empty(attn.shape, np.float32)
        return kernel_input(np.multiply(attn, np.float32(scale), out=out, dtype=np.float32, casting="unsafe"))
    raise TypeError(f"unsupported attention dtype {attn.dtype}")


# ------------------------------------------------------------------------------------------------------
# decode(raw, k, lut) -> float32 p;  plogp(raw, k, p, table) -> float32 p ln p;  decode_value(code, lut).
# Typed per raw dtype: uint16 = float16 bits, converted in registers (LLVM fpext half -> float, i.e. the
# F16C instruction, vectorizable); uint8 through the 256-entry table; float32 as is.
# ------------------------------------------------------------------------------------------------------
def decode(raw, k, lut):  # noqa: ANN001, ANN201 - numba overload stub
    raise NotImplementedError


def decode_value(code, lut):  # noqa: ANN001, ANN201 - numba overload stub
    raise NotImplementedError


def plogp(raw, k, p, table):  # noqa: ANN001, ANN201 - numba overload stub
    raise NotImplementedError


def exact_value(raw, k, lut):  # noqa: ANN001, ANN201 - numba overload stub
    raise NotImplementedError


def check_key(bits, k):  # noqa: ANN001, ANN201 - numba overload stub
    raise NotImplementedError


def bits_value(code, lut):  # noqa: ANN001, ANN201 - numba overload stub
    raise NotImplementedError


@overload(check_key, inline="always")
def _check_key_impl(bits, k):  # noqa: ANN001, ANN202
    """An unsigned key per stored value whose maximum over a row says whether the row's values are in range,
    with integer operations only (so that fast-math cannot assume a NaN away): ``bits`` are the raw codes
    (uint8), float16 bit patterns (uint16) or float32 bit patterns (uint32). A non-negative value keeps its bits
    (they order like the values, and +inf and NaN above every finite value); -0.0 becomes 0; any other value
    with the sign bit set becomes the largest key. A row is in range when its largest key is at most the key of
    the largest allowed value. (The kernels take the plain maximum of the bits first, which equals the largest
    key unless it has the sign bit set, and only then look at the keys.)"""
    if bits.dtype == types.uint8:
        return lambda bits, k: np.uint32(bits[k])
    if bits.dtype == types.uint16:

        def key16(bits, k):  # noqa: ANN001, ANN202
            b = np.uint32(bits[k])
            return b if b < 0x8000 else (np.uint32(0) if b == 0x8000 else np.uint32(0xFFFFFFFF))

        return key16

    def key32(bits, k):  # noqa: ANN001, ANN202
        b = np.uint32(bits[k])
        return b if b < 0x80000000 else (np.uint32(0) if b == 0x80000000 else np.uint32(0xFFFFFFFF))

    return key32


@overload(bits_value, inline="always")
def _bits_value_impl(code, lut):  # noqa: ANN001, ANN202
    """float32 value of one code as :func:`check_bits` holds it (the row maximum of the feature kernel)."""
    if code == types.uint32:
        return lambda code, lut: bits_to_float(code)
    if code == types.uint16:
        return lambda code, lut: half_to_float(code)
    return lambda code, lut: lut[code]


def check_bits(raw: np.ndarray) -> np.ndarray:
    """The array :func:`check_key` reads for ``raw`` (a :class:`KernelInput`'s codes): float32 as uint32 bits."""
    return raw.view(np.uint32) if raw.dtype == np.float32 else raw


def hi_key(raw: np.ndarray, hi: float) -> int:
    """The :func:`check_key` of the largest allowed value ``hi`` (probability units) for ``raw``'s codes;
    ``inf``: no limit. uint8 codes are within their 255 levels by construction."""
    if not np.isfinite(hi) or raw.dtype == np.uint8:
        return 0xFFFFFFFF
    if raw.dtype == np.uint16:  # float16 bits
        return int(np.float16(min(hi, 65504.0)).view(np.uint16))
    return int(np.float32(hi).view(np.uint32))


@overload(exact_value, inline="always")
def _exact_value_impl(raw, k, lut):  # noqa: ANN001, ANN202
    """float64 value whose sums are exact and order-independent for arg-max decisions: the code itself for
    uint8 (the 1/255 scale does not change an arg-max), the exact float16 value, or the float32 value."""
    if isinstance(raw.dtype, types.Float):
        return lambda raw, k, lut: np.float64(raw[k])
    if raw.dtype == types.uint16:
        return lambda raw, k, lut: np.float64(half_to_float(raw[k]))
    return lambda raw, k, lut: np.float64(raw[k])


@overload(decode_value, inline="always")
def _decode_value_impl(code, lut):  # noqa: ANN001, ANN202
    if isinstance(code, types.Float):
        return lambda code, lut: np.float32(code)
    if code == types.uint16:
        return lambda code, lut: half_to_float(code)
    return lambda code, lut: lut[code]


@overload(decode, inline="always")
def _decode_impl(raw, k, lut):  # noqa: ANN001, ANN202
    return lambda raw, k, lut: decode_value(raw[k], lut)


@overload(plogp, inline="always")
def _plogp_impl(raw, k, p, table):  # noqa: ANN001, ANN202
    if isinstance(raw.dtype, types.Float):
        return lambda raw, k, p, table: np.float32(p * np.log(max(p, np.float32(1e-45))))
    return lambda raw, k, p, table: table[raw[k]]


# ------------------------------------------------------------------------------------------------------
# Work splitting: contiguous record ranges of about equal sum of l^2 (a record of length l costs l^2, not 1)
# ------------------------------------------------------------------------------------------------------
def balanced_bounds(lengths: np.ndarray, parts: int | None = None, power: int = 2) -> np.ndarray:
    """Boundaries ``(n_parts + 1,)`` int64 splitting records into contiguous ranges of ~equal ``sum l^power``.

    ``parts`` defaults to 4 per numba thread (so a slow range does not idle the others).
    """
    n = len(lengths)
    if parts is None:
        parts = 4 * numba.get_num_threads()
    parts = max(1, min(parts, n))
    if n == 0:
        return np.zeros(1, np.int64)
    cost = np.cumsum(lengths.astype(np.float64) ** power)
    targets = cost[-1] * np.arange(1, parts) / parts
    cuts = np.searchsorted(cost, targets, side="left") + 1
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, n - 1 if n > 1 else 1), [n]]))
    return bounds.astype(np.int64)


@njit(cache=True, nogil=True)
def sep_positions(special: np.ndarray, t0: int, l: int) -> np.ndarray:
    """Positions ``> 0`` of special tokens ([SEP]s) within a record whose tokens start at ``t0``."""
    n = 0
    for j in range(1, l):
        if special[t0 + j]:
            n += 1
    out = np.empty(n, np.int64)
    n = 0
    for j in range(1, l):
        if special[t0 + j]:
            out[n] = j
            n += 1
    return out


@njit(cache=True, nogil=True)
def punct_positions(special: np.ndarray, punct: np.ndarray, t0: int, l: int) -> np.ndarray:
    """Positions of punctuation wordpieces (never special tokens) within a record."""
    n = 0
    for j in range(l):
        if punct[t0 + j] and not special[t0 + j]:
            n += 1
    out = np.empty(n, np.int64)
    n = 0
    for j in range(l):
        if punct[t0 + j] and not special[t0 + j]:
            out[n] = j
            n += 1
    return out
