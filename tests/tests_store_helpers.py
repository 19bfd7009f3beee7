"""A writer on a synthetic store and its batches, for tests that drive StoreWriter by hand."""

from __future__ import annotations

from pathlib import Path

from test_store import create, make_batches

from attnx.store import StoredBatch, StoreWriter


def make_writer_batches(path: Path, n_batches: int = 3, per_batch: int = 10) -> tuple[StoreWriter, list[StoredBatch]]:
    """A new float16 store at ``path`` committing after every append, and ``n_batches`` batches for it."""
    return create(path, "float16", commit_bytes=1), make_batches(11, n_batches, per_batch, "float16")
