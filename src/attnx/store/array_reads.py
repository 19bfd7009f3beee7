"""A snapshot's arrays, opened and checked (:func:`open_arrays`), and element ranges of them read with one-line
errors (:class:`ArrayReads`): the chunk objects of every range fetched in one batch on zarr's event loop and
decoded in the calling thread (:mod:`attnx.store.chunk_reader`), or zarr's own codec pipeline for arrays whose
codecs that module does not decode. Knows nothing of records: callers name them in ``what``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import icechunk
import numpy as np
import zarr
from zarr.core.sync import sync

from attnx.errors import StoreError
from attnx.store import validate
from attnx.store.chunk_reader import ChunkReader
from attnx.store.location import _first_line


def chunk_count(session: icechunk.Session, name: str) -> int:
    """Chunk objects array ``name`` has in ``session``'s snapshot (from the manifests, no chunk read)."""

    async def count() -> int:
        return len({c async for c in session.chunk_coordinates(f"/{name}")})

    return sync(count())


def open_arrays(
    group: zarr.Group, session: icechunk.Session, specs: dict[str, tuple[np.dtype, int]], reserved: bool, path: str
) -> dict[str, zarr.Array]:
    """The arrays ``specs`` names (name -> (dtype, committed elements)) in the snapshot's root ``group``, each
    checked against its spec and its chunk objects counted (:mod:`attnx.store.validate`); ``reserved``: an
    incomplete store may hold room past its commit."""
    arrays = {}
    for name, (dtype, n) in specs.items():
        try:
            array = group[name]
        except KeyError:
            raise StoreError(f"{path}: array {name} is missing") from None
        except Exception as exc:  # noqa: BLE001 - damaged array metadata (e.g. an unknown codec argument)
            raise StoreError(f"{path}: cannot open array {name}: {_first_line(exc)}") from None
        if not isinstance(array, zarr.Array):
            raise StoreError(f"{path}: {name} is not an array")
        validate.check_array_meta(name, array.shape, array.dtype, dtype, n, path, reserved=reserved)
        try:
            present = chunk_count(session, name)
        except Exception as exc:  # noqa: BLE001 - a missing or corrupt manifest
            raise StoreError(f"{path}: cannot list the chunks of {name}: {_first_line(exc)}") from None
        validate.check_chunk_count(name, n, int(array.chunks[0]), present, path)
        arrays[name] = array
    return arrays


class ArrayReads:
    """Reads of the validated ``arrays`` of one snapshot at ``path`` (named in every error); ``payload_array``: the
    array whose decode is the one place every map (or --stats-only feature) the reader returns passes through."""

    def __init__(self, arrays: dict[str, zarr.Array], payload_array: str, path: str) -> None:
        self.arrays, self.payload_array, self.path = arrays, payload_array, path
        self.chunk_readers = {name: ChunkReader.for_array(array) for name, array in arrays.items()}
        self._cache: dict[tuple[str, int], np.ndarray] = {}  # a few decoded chunks for random access

    def read_cached(self, name: str, start: int, stop: int, end: int, what: Callable[[], str]) -> np.ndarray:
        """Elements [start, stop) of ``name`` (``end``: its committed elements) through a cache of the last four
        decoded chunks, so reading records one by one decodes each chunk once; a range over two chunks is read
        directly."""
        chunk = int(self.arrays[name].chunks[0])
        c0 = start // chunk
        if c0 != (stop - 1) // chunk:
            return self.read(name, start, stop, what)
        data = self._cache.get((name, c0))
        if data is None:
            data = self.read(name, c0 * chunk, min((c0 + 1) * chunk, end), what)
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[(name, c0)] = data
        return data[start - c0 * chunk : stop - c0 * chunk]

    def read(self, name: str, start: int, stop: int, what: Callable[[], str] | None = None) -> np.ndarray:
        """Elements [start, stop) of array ``name``; any failure names the array and the records involved."""
        return self.read_many([(name, start, stop)], what or (lambda: f"elements {start}..{stop - 1}"))[0]

    def read_many(
        self, spans: list[tuple[str, int, int]], what: Callable[[], str], out: np.ndarray | None = None
    ) -> list[np.ndarray]:
        """Several ``(array, start, stop)`` reads: every chunk object they need is fetched in one batch on zarr's
        event loop, then each array is decoded in this thread (:mod:`attnx.store.chunk_reader`; zarr's own path for
        arrays whose codecs that module does not decode). ``out``: a buffer the *last* span is decoded into (its
        first ``stop - start`` elements are returned). Any failure raises a one-line :class:`StoreError` naming
        the array and ``what()`` (the records involved)."""
        for name, a, b in spans:
            if not 0 <= a <= b <= self.arrays[name].shape[0]:
                raise StoreError(f"{self.path}: cannot read {name} ({what()}): elements {a}..{b} out of range")
        readers = [self.chunk_readers[name] for name, _, _ in spans]
        if any(r is None for r in readers):
            return self._read_many_zarr(spans, what, out)

        async def fetch_all() -> list:
            return await asyncio.gather(
                *(r.fetch(a, b) for r, (_, a, b) in zip(readers, spans, strict=True)), return_exceptions=True
            )

        try:
            raws = sync(fetch_all())
        except Exception as exc:  # noqa: BLE001 - the event loop itself failed
            raise StoreError(f"{self.path}: cannot read {spans[0][0]} ({what()}): {_first_line(exc)}") from None
        values = []
        for k, (reader, (name, a, b), raw) in enumerate(zip(readers, spans, raws, strict=True)):
            if isinstance(raw, BaseException):
                raise StoreError(f"{self.path}: cannot read {name} ({what()}): {_first_line(raw)}") from None
            if k == len(spans) - 1 and name == self.payload_array:
                values.append(self._decode_payload(reader, raw, a, b, what, out))
                continue
            try:
                values.append(reader.decode(raw, a, b, out if k == len(spans) - 1 else None))
            except Exception as exc:  # noqa: BLE001 - ChunkError, or a codec library's own
                raise StoreError(f"{self.path}: cannot read {name} ({what()}): {_first_line(exc)}") from None
        return values

    def _decode_payload(
        self, reader: ChunkReader, raw: list, a: int, b: int, what: Callable[[], str], out: np.ndarray | None
    ) -> np.ndarray:
        """Payload elements [a, b) (maps, or --stats-only features, in the stored dtype) decoded from the raw
        chunks ``raw`` of :meth:`ChunkReader.fetch`: the one place every map the reader returns passes through."""
        try:
            return reader.decode(raw, a, b, out)
        except Exception as exc:  # noqa: BLE001 - ChunkError, or a codec library's own
            raise StoreError(f"{self.path}: cannot read {self.payload_array} ({what()}): {_first_line(exc)}") from None

    def _read_one_zarr(self, name: str, start: int, stop: int, what: Callable[[], str]) -> np.ndarray:
        try:
            return np.asarray(self.arrays[name][start:stop])
        except Exception as exc:  # noqa: BLE001 - missing/corrupt chunks surface in many exception types
            raise StoreError(f"{self.path}: cannot read {name} ({what()}): {_first_line(exc)}") from None

    def _read_many_zarr(
        self, spans: list[tuple[str, int, int]], what: Callable[[], str], out: np.ndarray | None = None
    ) -> list[np.ndarray]:
        """:meth:`read_many` through zarr's codec pipeline (arrays with codecs :mod:`attnx.store.chunk_reader` does
        not decode), all spans in one pass of zarr's event loop."""
        from zarr.core.buffer.cpu import NDBuffer

        def one(k: int, name: str, a: int, b: int):  # noqa: ANN202 - a zarr coroutine
            array = self.arrays[name]._async_array
            if out is not None and k == len(spans) - 1:
                return array.get_orthogonal_selection((slice(a, b),), out=NDBuffer.from_numpy_array(out[: b - a]))
            return array.getitem(slice(a, b))

        async def gather() -> list:
            return await asyncio.gather(*(one(k, *span) for k, span in enumerate(spans)))

        try:
            values = [np.asarray(x) for x in sync(gather())]
            if out is not None:
                values[-1] = out[: spans[-1][2] - spans[-1][1]]
            return values
        except Exception as exc:  # noqa: BLE001 - missing/corrupt chunks surface in many exception types
            for name, a, b in spans:  # read each on its own: the first that fails raises, naming its array
                self._read_one_zarr(name, a, b, what)
            raise StoreError(f"{self.path}: cannot read {spans[0][0]} ({what()}): {_first_line(exc)}") from None
