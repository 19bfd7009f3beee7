"""Per-record results written back into a complete store (``derived/<name>``), as one Icechunk commit, and read
back (:meth:`attnx.store.AttentionStore.derived_writer` and :meth:`~attnx.store.AttentionStore.derived` call
these; this module needs only the store's repository and group, so the dependency goes one way)."""

from __future__ import annotations

import icechunk
import numpy as np
import zarr

from attnx.errors import StoreError
from attnx.store.append import EVERY_CHUNK, ArrayStream
from attnx.store.layout import BRANCH, codecs, dimension
from attnx.store.location import StoreLocation, WriterLock, _first_line


class DerivedWriter:
    """Ragged per-record results under ``derived/<name>``: ``values`` (D,) and ``offsets`` ((n+1,) int64).

    Append each record's flat values in physical order (the order :meth:`AttentionStore.blocks` yields);
    ``finish`` writes the offsets, marks the result complete and commits; until then readers see the store
    as it was. ``shape`` tells readers how to view one record, e.g. ``"l,l"`` for an ``(l, l)`` map per record.
    Holds the store's writer lock from construction to ``finish``/``close``.
    """

    def __init__(
        self,
        location: StoreLocation,
        repo: icechunk.Repository,
        records: int,
        name: str,
        dtype: str,
        shape: str,
        chunk_elems: int = 4 << 20,
    ) -> None:
        """``location``, ``repo``: the complete store's; ``records``: how many it holds."""
        if not name.isidentifier():
            raise StoreError(f"derived name {name!r}: use letters, digits and underscores")
        self.records, self.name, self.shape = records, name, shape
        self.lock = WriterLock(location).acquire()
        try:
            self.session = repo.writable_session(BRANCH)
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
                config=EVERY_CHUNK,
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
            if len(self.counts) != self.records:
                raise StoreError(f"derived {self.name}: {len(self.counts)} records written, store has {self.records}")
            self.values.flush(partial=True)
            offsets = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
            key = f"derived/{self.name}/offsets"
            self.group.create_array(
                key,
                data=offsets,
                chunks=(max(1, min(len(offsets), 1 << 20)),),
                dimension_names=[dimension(key)],
                config=EVERY_CHUNK,
                **codecs("zstd", np.int64, 3),
            )
            self.group[f"derived/{self.name}"].attrs.update({"shape": self.shape, "complete": True, **(attrs or {})})
            self.session.commit(f"attnx: derived/{self.name}", metadata={"records": self.records, "records_added": 0})
        finally:
            self.close()

    def close(self) -> None:
        self.lock.release()


def check_derived(group: zarr.Group, name: str, path: str) -> None:
    """Refuse a derived result ``name`` that is not in ``group`` (the store's root) or not complete."""
    key = f"derived/{name}"
    if not name.isidentifier() or key not in group or not group[key].attrs.get("complete"):
        raise StoreError(f"{path}: no complete derived result {name!r}")


def read_derived(group: zarr.Group, name: str, p: int, l: int, records: int, record: int, path: str) -> np.ndarray:
    """Values of ``derived/<name>`` (checked by :func:`check_derived`) of the record at physical position ``p``
    (input id ``record``, ``l`` tokens, of ``records``), viewed as ``(l, l)`` when stored with shape "l,l"."""
    key = f"derived/{name}"
    offsets = group[f"{key}/offsets"]
    values = group[f"{key}/values"]
    if offsets.shape != (records + 1,):
        raise StoreError(f"{path}: {key}/offsets has {offsets.shape[0]} entries for {records} records")
    start, stop = (int(x) for x in offsets[p : p + 2])
    square = group[key].attrs.get("shape") == "l,l"
    if not 0 <= start <= stop <= values.shape[0] or (square and stop - start != l * l):
        raise StoreError(f"{path}: {key}/offsets of record {record} are inconsistent")
    try:
        out = np.asarray(values[start:stop])
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"{path}: cannot read {key}/values (record {record}): {_first_line(exc)}") from None
    return out.reshape(l, l) if square else out
