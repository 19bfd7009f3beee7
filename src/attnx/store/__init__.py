"""The attnx store: Zarr v3 arrays in an Icechunk repository (transactional, checksummed, snapshot reads).

Layered like zarr-python: :mod:`~attnx.store.layout` (names, dtypes, codecs: the only module that knows
array paths), :mod:`~attnx.store.location` (where a store lives, the writer lock),
:mod:`~attnx.store.append` (a batch as per-array values, append-only array streams),
:mod:`~attnx.store.writer` (appending commits), :mod:`~attnx.store.region` (a distributed run's shard),
:mod:`~attnx.store.reader` (validated snapshot reads; it uses :mod:`~attnx.store.array_reads` for element ranges,
:mod:`~attnx.store.block_plan` for streamed blocks and :mod:`~attnx.store.summary` for history and sizes),
:mod:`~attnx.store.validate` and :mod:`~attnx.store.verify` (invariants, full checks),
:mod:`~attnx.store.derived` (results written back), :mod:`~attnx.store.dataset` (the xarray view).
Imports go one way, down this list's layers (tests/test_import_edges.py checks there is no cycle).
"""

from attnx.store.append import StoredBatch
from attnx.store.layout import FORMAT, STORED_DTYPES, Commit, Payload, record_sizes, resolve_codec
from attnx.store.location import StoreLocation, WriterLock
from attnx.store.reader import AttentionBlock, AttentionStore, open_store, store_nbytes
from attnx.store.writer import StoreWriter, WriterConfig, holds_store

__all__ = [
    "FORMAT",
    "STORED_DTYPES",
    "AttentionBlock",
    "AttentionStore",
    "Commit",
    "Payload",
    "StoreLocation",
    "StoreWriter",
    "StoredBatch",
    "WriterConfig",
    "WriterLock",
    "holds_store",
    "open_store",
    "record_sizes",
    "resolve_codec",
    "store_nbytes",
]

# imported last (after zarr): its exit handler must run before zarr's stops the event loop
from attnx.store import exit_guard  # noqa: E402, F401 - registers the exit handler
