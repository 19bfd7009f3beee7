"""Per-record results written back into a complete store (``derived/<name>``), as one Icechunk commit."""

from __future__ import annotations

import numpy as np
import zarr

from attnx.errors import StoreError
from attnx.store.append import ArrayStream, empty_chunks_written
from attnx.store.layout import BRANCH, codecs, dimension
from attnx.store.location import WriterLock
from attnx.store.reader import AttentionStore


class DerivedWriter:
    """Ragged per-record results under ``derived/<name>``: ``values`` (D,) and ``offsets`` ((n+1,) int64).

    Append each record's flat values in physical order (the order :meth:`AttentionStore.blocks` yields);
    ``finish`` writes the offsets, marks the result complete and commits; until then readers see the store
    as it was. ``shape`` tells readers how to view one record, e.g. ``"l,l"`` for an ``(l, l)`` map per record.
    Holds the store's writer lock from construction to ``finish``/``close``.
    """

    def __init__(self, store: AttentionStore, name: str, dtype: str, shape: str, chunk_elems: int = 4 << 20) -> None:
        if not store.complete:
            raise StoreError(f"{store.path}: derive results only from a complete store (resume it first)")
        if not name.isidentifier():
            raise StoreError(f"derived name {name!r}: use letters, digits and underscores")
        self.store, self.name, self.shape = store, name, shape
        self.lock = WriterLock(store.location).acquire()
        try:
            self.session = store.repo.writable_session(BRANCH)
            with empty_chunks_written():
                group = zarr.open_group(store=self.session.store, mode="r+", zarr_format=3)
                if f"derived/{name}" in group:
                    del group[f"derived/{name}"]
                np_dtype = np.dtype(dtype)
                key = f"derived/{name}/values"
                values = group.create_array(
                    key,
                    shape=(0,),
                    chunks=(chunk_elems,),
                    dtype=np_dtype,
                    fill_value=0,
                    dimension_names=[dimension(key)],
                    **codecs("blosc-lz4", np_dtype, 1),
                )
        except BaseException:
            self.lock.release()
            raise
        self.group = group
        self.values = ArrayStream(values, 0)
        self.counts: list[int] = []

    def append(self, flat: np.ndarray, counts: np.ndarray) -> None:
        """``flat``: values of the next ``len(counts)`` records back to back; ``counts``: elements per record."""
        if int(np.sum(counts)) != len(flat):
            raise StoreError(f"derived {self.name}: {len(flat)} values for {int(np.sum(counts))} expected")
        self.values.append(flat)
        self.values.flush(partial=False)
        self.counts.extend(np.asarray(counts, np.int64).tolist())

    def finish(self, attrs: dict | None = None) -> None:
        try:
            if len(self.counts) != len(self.store):
                raise StoreError(
                    f"derived {self.name}: {len(self.counts)} records written, store has {len(self.store)}"
                )
            self.values.flush(partial=True)
            offsets = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
            key = f"derived/{self.name}/offsets"
            with empty_chunks_written():
                self.group.create_array(
                    key,
                    data=offsets,
                    chunks=(max(1, min(len(offsets), 1 << 20)),),
                    dimension_names=[dimension(key)],
                    **codecs("zstd", np.int64, 3),
                )
            self.group[f"derived/{self.name}"].attrs.update({"shape": self.shape, "complete": True, **(attrs or {})})
            self.session.commit(
                f"attnx: derived/{self.name}", metadata={"records": len(self.store), "records_added": 0}
            )
        finally:
            self.close()

    def close(self) -> None:
        self.lock.release()
