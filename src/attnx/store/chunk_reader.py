"""Reading ranges of a store's 1-D arrays at codec speed: raw chunk bytes from Icechunk, decoded here.

zarr reads a range chunk by chunk through its codec pipeline: each chunk is a coroutine on zarr's one event-loop
thread, decoded on a worker of its thread pool, then copied into the result. On EWT's float16 store that path
cost 1.09 core-seconds per GB of stored float16 while blosc-lz4 + bit-shuffle alone decodes the same chunks
several times faster (``benchmarks/bench_read_path.py`` measures both). :class:`ChunkReader` instead fetches every chunk
object of a read in one batch of Icechunk requests and decodes each in the calling thread, straight into the
caller's buffer: the crc32c check (``google_crc32c``, as zarr does it) and the decompression (numcodecs' blosc
and zstd, which release the GIL) run on as many threads as call it. Chunks that only partly overlap the range
are decoded into a scratch buffer and the overlap copied.

Nothing is checked less than on zarr's path: a missing chunk object, a checksum mismatch, a blosc header whose
size is not the chunk's or a failed decompression all raise :class:`ChunkError` (never a fill value); the
caller names the array and records. Arrays whose codec pipeline is not ``bytes (little endian) -> [blosc |
zstd] -> crc32c`` get no reader (:meth:`ChunkReader.for_array` returns None) and stay on zarr's path.
"""

from __future__ import annotations

import asyncio
import sys

import google_crc32c
import numcodecs.blosc as blosc
import numcodecs.zstd as zstd
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync


class ChunkError(Exception):
    """A chunk of a read could not be fetched or decoded (the message says which chunk and why)."""


class ChunkReader:
    """Elements ``[a, b)`` of one 1-D zarr v3 array of an Icechunk store, decoded outside zarr."""

    def __init__(self, array: zarr.Array, compressor: str) -> None:
        self.array = array
        self.store = array.store_path.store
        self.prefix = f"{array.path}/" if array.path else ""
        self.chunk = int(array.chunks[0])
        self.dtype = np.dtype(array.dtype)
        self.chunk_nbytes = self.chunk * self.dtype.itemsize
        self.compressor = compressor  # "blosc" | "zstd" | "none"

    @classmethod
    def for_array(cls, array: zarr.Array) -> ChunkReader | None:
        """A reader for ``array``, or None when its layout or codecs are not the ones this module decodes."""
        meta = array.metadata
        if getattr(meta, "zarr_format", None) != 3 or len(array.shape) != 1 or sys.byteorder != "little":
            return None
        codecs = list(meta.codecs)
        if len(codecs) not in (2, 3) or not isinstance(codecs[0], BytesCodec):
            return None
        if not isinstance(codecs[-1], Crc32cCodec):
            return None
        if codecs[0].endian is not None and codecs[0].endian.value != "little":
            return None
        middle = codecs[1:-1]
        if not middle:
            compressor = "none"
        elif isinstance(middle[0], BloscCodec):
            compressor = "blosc"
        elif isinstance(middle[0], ZstdCodec):
            compressor = "zstd"
        else:
            return None
        if np.dtype(array.dtype).byteorder not in ("=", "<", "|"):
            return None
        return cls(array, compressor)

    def key(self, i: int) -> str:
        return self.prefix + self.array.metadata.encode_chunk_key((i,))

    def chunks_of(self, a: int, b: int) -> range:
        """Chunk indices holding elements ``[a, b)``."""
        return range(a // self.chunk, (b - 1) // self.chunk + 1) if b > a else range(0)

    async def fetch(self, a: int, b: int) -> list:
        """Raw bytes (numpy uint8) of each chunk holding ``[a, b)``, None for a missing object (a coroutine)."""
        proto = default_buffer_prototype()
        values = await asyncio.gather(*(self.store.get(self.key(i), proto) for i in self.chunks_of(a, b)))
        return [None if v is None else v.as_numpy_array() for v in values]

    def decode(self, raws: list, a: int, b: int, out: np.ndarray | None = None) -> np.ndarray:
        """Elements ``[a, b)`` from ``raws`` (what :meth:`fetch` returned for the same range), into ``out[: b - a]``
        when given (a 1-D array of this dtype), else into a new array; returns that ``(b - a,)`` array."""
        n = b - a
        result = np.empty(n, self.dtype) if out is None else out[:n]
        if out is not None and (out.dtype != self.dtype or not result.flags.c_contiguous or len(result) < n):
            raise ValueError(f"out must be a contiguous {self.dtype} array of at least {n} elements")
        scratch = None
        for i, raw in zip(self.chunks_of(a, b), raws, strict=True):
            c0 = i * self.chunk
            lo, hi = max(a, c0), min(b, c0 + self.chunk)
            if lo == c0 and hi == c0 + self.chunk:
                self._decode_chunk(i, raw, result[lo - a : hi - a])
            else:
                if scratch is None:
                    scratch = np.empty(self.chunk, self.dtype)
                self._decode_chunk(i, raw, scratch)
                result[lo - a : hi - a] = scratch[lo - c0 : hi - c0]
        return result

    def read(self, a: int, b: int, out: np.ndarray | None = None) -> np.ndarray:
        """Elements ``[a, b)``: :meth:`fetch` on zarr's event loop, then :meth:`decode` in this thread."""
        return self.decode(sync(self.fetch(a, b)), a, b, out)

    def _decode_chunk(self, i: int, raw: np.ndarray | None, dest: np.ndarray) -> None:
        """Check and decode chunk ``i`` into ``dest`` (exactly one chunk of elements, contiguous)."""
        if raw is None:
            raise ChunkError(f"chunk {i} is missing")
        if len(raw) < 4:
            raise ChunkError(f"chunk {i} is truncated ({len(raw)} bytes)")
        inner = raw[:-4]
        if google_crc32c.value(inner) != int.from_bytes(raw[-4:].tobytes(), "little"):
            raise ChunkError(f"chunk {i}: stored and computed checksum do not match")
        target = dest.view(np.uint8)
        try:
            if self.compressor == "blosc":
                # blosc header: version, versionlz, flags, typesize (1 byte each), then uint32 LE nbytes,
                # blocksize, cbytes
                header = np.frombuffer(inner[:16].tobytes(), "<u4", count=4, offset=0) if len(inner) >= 16 else None
                if header is None or int(header[1]) != self.chunk_nbytes or int(header[3]) != len(inner):
                    raise ChunkError(f"chunk {i}: its blosc header does not describe one chunk of "
                                     f"{self.chunk_nbytes} bytes in {len(inner)}")
                blosc.decompress(inner, target)
            elif self.compressor == "zstd":
                zstd.decompress(inner, target)
            else:
                if len(inner) != self.chunk_nbytes:
                    raise ChunkError(f"chunk {i} holds {len(inner)} bytes, not {self.chunk_nbytes}")
                target[:] = inner
        except ChunkError:
            raise
        except Exception as exc:  # noqa: BLE001 - codec libraries raise RuntimeError, ValueError, ...
            why = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise ChunkError(f"chunk {i} cannot be decoded: {why}") from None
