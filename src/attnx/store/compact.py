"""``attnx compact``: shrink a finished store to its newest snapshot (Icechunk snapshot expiry + garbage collection).

A run commits every ``commit_seconds`` / ``commit_bytes``, and Icechunk keeps every snapshot: each commit leaves
a snapshot file, a transaction log and the manifests it rewrote, so a long run's metadata grows by a constant
amount per commit. Once the store is complete those older snapshots only serve time travel (``history()``,
``open_store(path, snapshot=...)``). Compacting expires every snapshot of branch ``main`` older than its newest
(``Repository.expire_snapshots``; Icechunk keeps the repository's root snapshot, which holds no data) and then
deletes every object no branch or tag reaches (``Repository.garbage_collect``): old snapshots, transaction logs,
rewritten manifests, chunks overwritten by later commits or left by a killed run. The newest snapshot, its id
and every byte it reads are unchanged. Tags and other branches a user made are left alone (and keep what they
reach).

Refused while a writer holds the store's lock (the same one-line error a second writer gets) and on an
incomplete store (its older snapshots are what a resumed run and a debugging user may still need; finish it
first). Objects written after the newest commit are never deleted, so a writer that somehow started on an
object store (where the lock is a no-op) keeps its in-flight chunks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from attnx.errors import StoreError
from attnx.store.layout import BRANCH
from attnx.store.location import StoreLocation, WriterLock, _first_line
from attnx.store.reader import AttentionStore

# top-level entries of an Icechunk repository; all but chunks/ are metadata ("other": files that are not
# Icechunk's, e.g. an analysis folder written inside a local store)
_KINDS = ("snapshots", "manifests", "transactions", "chunks", "refs", "config.yaml")
_METADATA = ("snapshots", "manifests", "transactions", "refs", "config.yaml")


@dataclass(frozen=True)
class Footprint:
    """Objects and bytes of a local store by kind (``snapshots``, ``manifests``, ``transactions``, ``chunks``,
    ``refs``, ``config.yaml``; ``other``: files that are not Icechunk's)."""

    objects: dict[str, int]
    bytes: dict[str, int]

    @property
    def total_objects(self) -> int:
        return sum(self.objects.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    @property
    def metadata_bytes(self) -> int:
        """Icechunk's bytes other than chunks: snapshots, manifests, transaction logs, refs, config."""
        return sum(self.bytes.get(k, 0) for k in _METADATA)

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "total_objects": self.total_objects,
            "total_bytes": self.total_bytes,
            "metadata_bytes": self.metadata_bytes,
        }


def footprint(where: str | StoreLocation) -> Footprint | None:
    """Objects and bytes under a local store's folder by kind; None for object stores (not listed)."""
    local = StoreLocation.parse(where).local
    if local is None:
        return None
    objects = dict.fromkeys((*_KINDS, "other"), 0)
    nbytes = dict.fromkeys((*_KINDS, "other"), 0)
    for f in Path(local).rglob("*"):
        if f.is_file():
            top = f.relative_to(local).parts[0]
            kind = top if top in _KINDS else "other"
            objects[kind] += 1
            nbytes[kind] += f.stat().st_size
    return Footprint(objects, nbytes)


@dataclass
class CompactReport:
    """What :func:`compact_store` did. ``before``/``after`` are None on object stores; ``deleted`` is Icechunk's
    garbage-collection summary (``snapshots_deleted``, ``manifests_deleted``, ``chunks_deleted``,
    ``transaction_logs_deleted``, ``bytes_deleted``, ...)."""

    path: str
    snapshot: str  # the newest snapshot, kept
    records: int
    snapshots_expired: int
    deleted: dict[str, int] = field(default_factory=dict)
    before: Footprint | None = None
    after: Footprint | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        out["before"] = self.before.to_json() if self.before else None
        out["after"] = self.after.to_json() if self.after else None
        return out


def compact_store(where: str | StoreLocation) -> CompactReport:
    """Keep only the newest snapshot of a complete store's ``main`` and delete what nothing references.

    Holds the writer lock throughout: raises the one-line :class:`StoreError` a second writer gets while a
    writer (``attnx extract``, an ``analyze`` writing results back, another compact) holds it, and one naming
    the record count on an incomplete store. Readers of older snapshots opened before may fail afterwards.
    """
    location = StoreLocation.parse(where)
    t0 = time.perf_counter()
    lock = WriterLock(location).acquire()
    try:
        store = AttentionStore(location)
        if not store.complete:
            raise StoreError(
                f"{store.path}: incomplete ({len(store):,} records committed); finish it with the same attnx "
                "extract command first: compacting keeps only the newest snapshot"
            )
        before = footprint(location)
        repo = store.repo
        try:
            tip = next(iter(repo.ancestry(branch=BRANCH)))
            if tip.id != store.snapshot_id:  # cannot happen under the lock; never compact past a moving branch
                raise StoreError(f"{store.path}: branch {BRANCH} moved while compacting; run attnx compact again")
            expired = repo.expire_snapshots(tip.written_at)
            summary = repo.garbage_collect(tip.written_at)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - storage failures become one line
            raise StoreError(
                f"{store.path}: compaction failed ({_first_line(exc)}); the newest snapshot is intact"
            ) from None
        deleted = {
            k: int(getattr(summary, k))
            for k in dir(summary)
            if k.endswith("_deleted") and isinstance(getattr(summary, k), int)
        }
        return CompactReport(
            path=store.path,
            snapshot=tip.id,
            records=len(store),
            snapshots_expired=len(expired),
            deleted=deleted,
            before=before,
            after=footprint(location),
            seconds=time.perf_counter() - t0,
        )
    finally:
        lock.release()
