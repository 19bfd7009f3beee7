"""Whole chunks encoded and stored on a pool of I/O threads, outside zarr's per-chunk async path.

zarr writes a slice by running each chunk's codecs as coroutines on its one event-loop thread (blosc and
zstd hop to a worker with ``asyncio.to_thread``), so the writer thread waits for every chunk and a second
thread barely helps (benchmarks/RESULTS.md, writer). Here each whole chunk goes to a thread of a pool that
runs the array's own zarr codec objects synchronously (``_encode_sync``: blosc, zstd and crc32c release the
GIL while they work) and hands the finished bytes to the store (an Icechunk session) under the chunk's key.
The bytes are exactly what zarr writes for the same chunk: the same codec objects, the same chunk key.

The thread does not wait for the store: the ``set`` goes to zarr's event loop (Icechunk's own threads write
the file) and the thread goes on to encode the next chunk. Waiting there made one I/O thread encode and
write in turn, so one thread wrote at about the rate of one file-writing thread (benchmarks/RESULTS.md,
writer), however fast the codec. The writer thread still waits for both, the encode and the store, of a
chunk before it hands on more than ``2 x threads + STORES_AHEAD`` chunks.

The writer thread goes on appending while chunks encode; :meth:`ChunkPool.drain` waits for all of them and
re-raises the first failure, and every caller drains before it commits, resizes down, reads back or forks,
so a commit never misses a chunk it counts. After one failure every later drain raises it again: a failed
chunk write is never committed over.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import zarr
from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec
from zarr.core.buffer import Buffer, default_buffer_prototype
from zarr.core.sync import _get_loop  # zarr's own event loop, the one its ``sync`` runs coroutines on


class ChunkEncoder:
    """One array's zarr codec chain, run synchronously on a whole 1-D chunk; None where a codec has no sync
    path or the array may skip empty chunks (then zarr's own path writes it)."""

    def __init__(self, array: zarr.Array) -> None:
        aa = array._async_array
        self.metadata = aa.metadata
        self.config = aa.config
        self.codecs = list(aa.codec_pipeline)
        self.store = aa.store_path.store
        self.prefix = aa.store_path.path
        self.chunk = int(array.chunks[0])
        self.dtype = array.dtype
        self.fill = self.metadata.fill_value
        self.prototype = default_buffer_prototype()

    @classmethod
    def of(cls, array: zarr.Array) -> ChunkEncoder | None:
        enc = cls(array)
        kinds = (ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec)
        ok = all(isinstance(c, kinds) and hasattr(c, "_encode_sync") for c in enc.codecs)
        return enc if ok and enc.config.write_empty_chunks and array.ndim == 1 else None

    def key(self, k: int) -> str:
        name = self.metadata.encode_chunk_key((k,))
        return f"{self.prefix}/{name}" if self.prefix else name

    def encode(self, k: int, values: np.ndarray) -> object:
        """Chunk ``k`` holding ``values`` (at most one chunk; the rest of the chunk is the fill value)."""
        if len(values) < self.chunk:
            full = np.full(self.chunk, self.fill, self.dtype)
            full[: len(values)] = values
            values = full
        spec = self.metadata.get_chunk_spec((k,), self.config, self.prototype)
        data = self.prototype.nd_buffer.from_numpy_array(values)
        for codec in self.codecs:
            data = codec._encode_sync(data, spec)
        return data

    def write(self, k: int, values: np.ndarray) -> Future:
        """Encode chunk ``k`` on this thread and start storing it; the store's future (``values`` is free now)."""
        data = self.encode(k, values)
        return asyncio.run_coroutine_threadsafe(self._store_chunk(self.key(k), data), _get_loop())

    async def _store_chunk(self, key: str, data: Buffer) -> None:
        # through the store's public ``set``, as zarr writes: Icechunk's own store object would take the array
        # without ``IcechunkStore.set``'s copy into ``bytes`` (about 5% faster on tmpfs), but whatever wraps or
        # watches that ``set`` (fault injection in the tests, a user's instrumentation) would miss every chunk
        await self.store.set(key, data)


# Chunks that may wait for the store beyond two per I/O thread: Icechunk writes each on its own threads, and
# with none ahead a slow page cache stalled the encoding (measured on this VM's disk: 0.40-0.47 GB/s with
# none, 0.64-0.74 with 4; 4 x about 15 MB of raw and compressed chunk held).
STORES_AHEAD = 4


class ChunkPool:
    """``threads`` I/O threads that encode and store whole chunks; at most ``2 x threads + STORES_AHEAD`` wait
    at once."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"io threads must be >= 1, not {threads}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="attnx-io")
        self._pending: collections.deque[Future] = collections.deque()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._free: dict[tuple[int, str], list[np.ndarray]] = {}  # chunk buffers handed back, by size and dtype

    def buffer(self, n: int, dtype: np.dtype) -> np.ndarray:
        """An ``(n,)`` array of ``dtype`` (contents undefined): one handed back by :meth:`submit` if there is one."""
        with self._lock:
            free = self._free.get((n, np.dtype(dtype).str))
            if free:
                return free.pop()
        return np.empty(n, dtype)

    def _give_back(self, values: np.ndarray) -> None:
        with self._lock:
            self._free.setdefault((len(values), values.dtype.str), []).append(values)

    def submit(self, encoder: ChunkEncoder, k: int, values: np.ndarray, recycle: bool = False) -> None:
        """Encode and store chunk ``k`` of ``encoder``'s array; ``values`` must not change afterwards
        (``recycle``: it came from :meth:`buffer` and goes back to the free list once encoded)."""
        self._raise()
        while len(self._pending) >= 2 * self.threads + STORES_AHEAD:
            self._wait(self._pending.popleft())
        fut = self._pool.submit(encoder.write, k, values)
        if recycle:
            fut.add_done_callback(lambda _f, v=values: self._give_back(v))
        self._pending.append(fut)

    def drain(self) -> None:
        """Wait for every submitted chunk; raise the first failure (now and at every later drain)."""
        while self._pending:
            self._wait(self._pending.popleft())
        self._raise()

    def _wait(self, fut: Future) -> None:
        exc = fut.exception()  # the encode
        if exc is None:
            exc = fut.result().exception()  # the store
        if exc is not None:
            with self._lock:
                self._error = self._error or exc
            self._raise()

    def check(self) -> None:
        """Raise the first chunk write that failed, if any (it sticks: see the module docstring)."""
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Wait for running chunks (their results are dropped) and stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
