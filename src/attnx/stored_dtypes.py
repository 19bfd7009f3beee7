"""Stored dtypes of attention probabilities: the one table of what each holds, its error and its codec.

A stored dtype turns float32 probabilities ``p`` in [0, 1] into what the store keeps and back:

==========  =============  ===============================  =================================================
name        numpy storage  stored value                     stated max abs error of storage (probability units)
==========  =============  ===============================  =================================================
float32     float32        p                                0
float16     float16        p rounded to half precision      2**-12 = 2.44e-4 (half an ulp on [0.5, 1)); values
                                                            below 6.1e-5 keep ~3e-8 absolute (subnormals)
uint8, q8   uint8          round(p * 255)                   1/510 + 2**-22 = 1.96e-3
qN (9..16)  uint16         round(p * (2**N - 1))            0.5/(2**N - 1) + 2**-22 (q10: 4.89e-4, q12: 1.22e-4)
==========  =============  ===============================  =================================================

The ``2**-22`` (2.4e-7) is the float32 arithmetic of encode (``p * (2**N - 1)`` rounded before ``round``) and
decode (``q * (1 / (2**N - 1))``); tests check every bound on random and real maps. Decoding always gives
float32. Quantised dtypes store tiny probabilities as 0 (anything below half a step): use float16 or float32
when a statistic takes logs of tiny probabilities (entropy, JS divergence on near-zero tails); a qN store
bounds the absolute error only.

``uint8`` and ``q8`` are the same bytes under two names (``uint8`` is the older one).

Each dtype names its default codec (measured in ``benchmarks/bench_codecs.py``; results in
``benchmarks/results/codecs.json``): :func:`zarr_codecs` builds the Zarr v3 pipeline bytes -> compressor ->
crc32c for it.

The GPU/CPU capture path encodes with :func:`encode_torch`. qN with N > 8 is kept as a torch **int16**
tensor holding the uint16 bit pattern (``q - 65536`` where ``q >= 32768``, which only q16 reaches), and
:func:`torch_to_numpy` views it as uint16. torch has a ``uint16`` dtype since 2.3, but as a "shell" dtype:
even in torch 2.13 ``index_copy_`` and ``add`` are not implemented for it on CPU, while int16 works for every
op the packing path needs on every torch 2.x; numpy >= 1.26 views int16 as uint16 at no cost.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec

if TYPE_CHECKING:  # torch is imported lazily: readers never need it
    import torch

# float32 arithmetic slack on top of the half-step rounding error of qN (encode product + decode product)
FLOAT32_SLACK = 2.0**-22
CODECS = ("blosc-lz4", "blosc-zstd", "zstd", "none")  # the one table of payload codecs (zarr_codecs builds them)


@dataclass(frozen=True)
class StoredDtype:
    """One stored dtype: storage type, quantisation levels, stated error and default codec."""

    name: str
    storage: np.dtype  # numpy dtype of the stored array
    levels: int  # 2**N - 1 for quantised dtypes (stored = round(p * levels)); 0 for float dtypes
    max_abs_error: float  # stated bound of |decode(encode(p)) - p| for p in [0, 1], probability units
    codec: str  # default codec (one of CODECS), chosen by benchmarks/bench_codecs.py
    level: int  # its compression level

    @property
    def quantised(self) -> bool:
        return self.levels > 0

    @property
    def scale(self) -> float:
        """Multiply stored values by this to get probabilities (1.0 for float dtypes)."""
        return 1.0 / self.levels if self.levels else 1.0

    @property
    def bits(self) -> int:
        """Bits of information per stored value before compression (N for qN, 16/32 for floats)."""
        return int(np.log2(self.levels + 1)) if self.levels else 8 * self.storage.itemsize


def _q(n: int, codec: str, level: int, name: str | None = None) -> StoredDtype:
    levels = (1 << n) - 1
    storage = np.dtype(np.uint8 if n <= 8 else np.uint16)
    return StoredDtype(name or f"q{n}", storage, levels, 0.5 / levels + FLOAT32_SLACK, codec, level)


# Default codecs, measured by benchmarks/bench_codecs.py (results/codecs.json: MiniLM maps of UD EWT dev, UD GUM
# dev, QNLI pairs and long EWT train sentences, 4 Mi-value chunks spread over each store; bits/value all corpora):
# - floats: blosc-lz4 + bit-shuffle (float16 13.75 bits/value) is within 2.5% of every lossless codec tried
#   (best: blosc-zstd-9 13.17, pcodec 13.25) at ~1.1 GB/s encode, 2 GB/s decode per core.
# - uint8/q8: plain zstd-1 (3.45 bits/value) beats blosc-zstd + bit-shuffle at levels 1-5 on bytes and speed.
# - q9..q16: blosc-zstd-5 + bit-shuffle: q10 5.38 bits/value = 39% of the float16 store, <= 44.5% on every
#   corpus (level 3: 45.7% on short EWT sentences, above the 45%); ~60-100 MB/s encode, ~750 MB/s decode
#   per core. pcodec (an ANS entropy coder) saves only 1.3% more and needs a pinned extra package: not used.
DTYPES: dict[str, StoredDtype] = {
    "float32": StoredDtype("float32", np.dtype(np.float32), 0, 0.0, "blosc-lz4", 5),
    "float16": StoredDtype("float16", np.dtype(np.float16), 0, 2.0**-12, "blosc-lz4", 5),
    "uint8": _q(8, "zstd", 1, name="uint8"),
    "q8": _q(8, "zstd", 1),
    **{f"q{n}": _q(n, "blosc-zstd", 5) for n in range(9, 17)},
}


def stored_dtype(name: str) -> StoredDtype:
    """The table entry for ``name``; a one-line error naming the choices otherwise."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown stored dtype {name!r} (choose from {', '.join(DTYPES)})") from None


def encode(p: np.ndarray, name: str) -> np.ndarray:
    """float32 probabilities (any shape, values in [0, 1]) -> stored array of the same shape.

    qN: ``round(clip(p, 0, 1) * (2**N - 1))`` computed in float32 (round half to even, as torch), so that
    :func:`encode_torch` gives the same integers bit for bit.
    """
    d = stored_dtype(name)
    p = np.asarray(p, dtype=np.float32)
    if not d.quantised:
        return p.astype(d.storage)
    q = np.clip(p, np.float32(0.0), np.float32(1.0)) * np.float32(d.levels)
    return np.rint(q, out=q).astype(d.storage)


def decode_ref(stored: np.ndarray, name: str) -> np.ndarray:
    """numpy reference of :func:`decode`: ``astype(float32)``, times ``1 / levels`` for quantised dtypes."""
    d = stored_dtype(name)
    out = np.asarray(stored).astype(np.float32)
    if d.quantised:
        out *= np.float32(d.scale)
    return out


# float16 bit pattern -> float32, for decoding through a table: on the 2-core EPYC, 8 MiB chunks, numpy's float16
# cast runs at 0.97 GB/s of float16, this gather at 2.9 GB/s; qN: numpy 3.0, numba 4.5 GB/s
# (benchmarks/bench_read_threads.py --dequantise-only)
_F16_TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def _gather_py(table: np.ndarray, bits: np.ndarray, out: np.ndarray) -> None:
    for i in range(bits.size):
        out[i] = table[bits[i]]


def _scale_py(q: np.ndarray, scale: np.float32, out: np.ndarray) -> None:
    for i in range(q.size):
        out[i] = np.float32(q[i]) * scale


@functools.cache
def _jitted() -> tuple:
    """``(_gather, _scale)`` compiled on first use: importing numba (and the scipy it imports) cost every
    ``attnx extract`` about 0.3 s of start-up for two loops only reading needs."""
    import numba

    jit = numba.njit(cache=True, nogil=True)
    return jit(_gather_py), jit(_scale_py)


def decode(stored: np.ndarray, name: str) -> np.ndarray:
    """Stored array (any shape) -> float32 probabilities of the same shape; bit-identical to :func:`decode_ref`.

    float16 goes through a 65,536-entry table, qN through one float32 product per value (numba, serial, GIL
    released: decode blocks on several threads with :func:`attnx.threads.ordered_map`). float32 comes back
    as is (no copy).
    """
    d = stored_dtype(name)
    stored = np.ascontiguousarray(stored)
    if d.storage == np.float32:
        return stored
    out = np.empty(stored.shape, np.float32)
    if d.storage == np.float16:
        _jitted()[0](_F16_TABLE, stored.reshape(-1).view(np.uint16), out.reshape(-1))
    else:
        _jitted()[1](stored.reshape(-1), np.float32(d.scale), out.reshape(-1))
    return out


def dtype_of_array(name: str) -> np.dtype:
    """numpy dtype of a store written with stored dtype ``name``."""
    return stored_dtype(name).storage


def torch_storage_dtype(name: str) -> torch.dtype:
    """The torch dtype :func:`encode_torch` returns: float32/float16, uint8 for q8, int16 for q9..q16."""
    import torch

    d = stored_dtype(name)
    return {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8, "uint16": torch.int16}[
        d.storage.name
    ]


def encode_torch(p: torch.Tensor, name: str) -> torch.Tensor:
    """float32 probabilities (any shape, any device) -> stored tensor of :func:`torch_storage_dtype`.

    Bit-identical to :func:`encode`; qN with N > 8 comes back as int16 holding the uint16 bit pattern.
    """
    import torch

    d = stored_dtype(name)
    if not d.quantised:
        return p.to(torch_storage_dtype(name))
    q = torch.round(p.float().clamp(0.0, 1.0) * d.levels)
    if d.storage == np.uint8:
        return q.to(torch.uint8)
    if d.levels > 32767:  # q16: map [32768, 65535] to [-32768, -1], the same 16 bits
        q = torch.where(q >= 32768.0, q - 65536.0, q)
    return q.to(torch.int16)


def torch_to_numpy(t: torch.Tensor, name: str) -> np.ndarray:
    """A CPU tensor from :func:`encode_torch` as the numpy storage array (a view, no copy)."""
    a = t.numpy()
    storage = stored_dtype(name).storage
    return a.view(storage) if a.dtype != storage else a


def zarr_codecs(codec: str, dtype: np.dtype | str, level: int) -> dict:
    """Zarr v3 codec pipeline for ``create_array``: bytes -> compressor -> crc32c (corrupt chunks fail on read).

    ``dtype`` is the numpy storage dtype (or a stored dtype name); blosc shuffles with bit-shuffle at its
    item size. ``level`` is the compression level (blosc-lz4, blosc-zstd, zstd).
    """
    if isinstance(dtype, str) and dtype in DTYPES:
        dtype = DTYPES[dtype].storage
    itemsize = np.dtype(dtype).itemsize
    if codec == "zstd":
        comp = [ZstdCodec(level=level)]
    elif codec in ("blosc-zstd", "blosc-lz4"):
        comp = [BloscCodec(cname=codec[6:], clevel=level, shuffle="bitshuffle", typesize=itemsize)]
    elif codec == "none":
        comp = []
    else:
        raise ValueError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")
    return {"serializer": BytesCodec(), "compressors": [*comp, Crc32cCodec()]}
