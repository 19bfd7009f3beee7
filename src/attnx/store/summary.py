"""What a store holds over time and on disk: its commit history and the bytes it takes; both need no
validated open."""

from __future__ import annotations

from pathlib import Path

import icechunk

from attnx.errors import StoreError
from attnx.store.location import StoreLocation, _first_line
from attnx.store.writer import open_repository


def commit_history(repo: icechunk.Repository, snapshot_id: str, path: str, limit: int | None = None) -> list[dict]:
    """The commits of ``snapshot_id`` and its ancestors, newest first: snapshot id, time (UTC), message, records
    after it and records it added; a missing or damaged older snapshot is a one-line :class:`StoreError`.
    ``limit``: stop after that many (each one is a snapshot file read and parsed: the 10^6-sentence soak's 637
    took about 2 s, so ``attnx info`` reads only the newest few)."""
    out: list[dict] = []
    try:
        for snap in repo.ancestry(snapshot_id=snapshot_id):
            if limit is not None and len(out) >= limit:
                break
            meta = snap.metadata or {}
            out.append(
                {
                    "snapshot": snap.id,
                    "time": snap.written_at.isoformat(timespec="seconds"),
                    "message": snap.message,
                    "records": meta.get("records"),
                    "records_added": meta.get("records_added"),
                }
            )
    except Exception as exc:  # noqa: BLE001 - a deleted or damaged older snapshot (IcechunkError)
        raise StoreError(
            f"{path}: cannot read the commit history after {len(out)} commits (an older "
            f"snapshot is missing or damaged: {_first_line(exc)})"
        ) from None
    return out


def store_nbytes(location: StoreLocation, repo: icechunk.Repository | None = None) -> int:
    """Bytes a store takes: everything under a local store's folder (every snapshot kept); on object stores,
    the chunk objects. Needs no validated open (the engine sizes a store it has just written)."""
    local = location.local
    if local is not None:
        return sum(f.stat().st_size for f in Path(local).rglob("*") if f.is_file())
    repo = repo or open_repository(location)
    stats = getattr(repo, "chunk_storage_stats", None)
    return int(stats().native_bytes) if stats else int(repo.total_chunks_storage())
