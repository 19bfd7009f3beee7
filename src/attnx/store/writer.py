"""Appending to a store: every commit is one Icechunk transaction that readers see whole or not at all.

Between commits the writer streams whole chunks into an Icechunk writable session; a commit writes each
array's partly filled last chunk (its tail stays in memory, so the next commit rewrites one chunk per array
at most: commit cost does not grow with the store) and the ``attnx.commit`` attribute, then commits. Commits
are sized by bytes and time (``Config.commit_bytes`` / ``commit_seconds``), always on batch boundaries. A
run killed at any moment leaves the last commit intact; uncommitted chunk objects are unreachable garbage.
"""

from __future__ import annotations

import datetime as _dt
import time
import warnings
from dataclasses import dataclass

import icechunk
import numpy as np
import zarr

from attnx.config import Config, io_threads
from attnx.errors import StoreError
from attnx.store import validate
from attnx.store.append import EVERY_CHUNK, StoredBatch, array_stream, batch_arrays, every_chunk, in_session
from attnx.store.chunk_writer import ChunkPool
from attnx.store.layout import (
    BRANCH,
    FORMAT,
    INDEX_ARRAY,
    REC_ARRAYS,
    TOK_ARRAYS,
    WORD_ARRAYS,
    Commit,
    Payload,
    codecs,
    dimension,
    resolve_codec,
    small_arrays,
    stored_dtype,
)
from attnx.store.location import StoreLocation, WriterLock, _first_line
from attnx.store.validate import vocab_digest

_DEFAULTS = Config()


@dataclass(frozen=True)
class WriterConfig:
    """What a :class:`StoreWriter` needs of :class:`attnx.config.Config`, with its defaults."""

    commit_bytes: int = _DEFAULTS.commit_bytes  # stored payload bytes between commits
    commit_seconds: float = _DEFAULTS.commit_seconds  # and at most this long between commits
    flush_chunks: int = _DEFAULTS.writer_flush_chunks  # whole payload chunks handed on together
    io_threads: int = 1  # threads that compress, checksum and store whole chunks (attnx.store.chunk_writer)

    @classmethod
    def from_config(cls, cfg: Config) -> WriterConfig:
        """The writer settings of ``cfg`` (``io_threads`` 0 there: what the machine can spare)."""
        return cls(cfg.commit_bytes, cfg.commit_seconds, cfg.writer_flush_chunks, io_threads(cfg))


def open_repository(location: StoreLocation) -> icechunk.Repository:
    try:
        return icechunk.Repository.open(location.storage(), config=_repo_config())
    except Exception as exc:  # noqa: BLE001 - every storage failure becomes one line
        raise StoreError(f"{location}: cannot open the store ({_first_line(exc)})") from None


# Icechunk caches every snapshot and manifest a repository object writes or reads, up to limits far above one
# run's needs, and a snapshot carries every node's attributes (an attnx store's: about 330 KB, the vocabulary),
# so a writer's memory grew with its commits: +250 MB over 374 commits, and the 10^6-sentence soak's 637 commits
# about 150 MB. These bound it to about a dozen snapshots (19-30 nodes each) and 100 manifests of 1,024 chunk
# references, more than a reader streams through at once (measured: flat live heap, same speed).
SNAPSHOT_NODES_CACHED = 256
CHUNK_REFS_CACHED = 100_000


def _repo_config() -> icechunk.RepositoryConfig:
    # one manifest per 1,024 chunks of an array: a commit rewrites only the manifest of the chunks it touched
    split = icechunk.ManifestSplittingConfig.from_dict(
        {icechunk.ManifestSplitCondition.AnyArray(): {icechunk.ManifestSplitDimCondition.Any(): 1024}}
    )
    caching = icechunk.CachingConfig(num_snapshot_nodes=SNAPSHOT_NODES_CACHED, num_chunk_refs=CHUNK_REFS_CACHED)
    return icechunk.RepositoryConfig(manifest=icechunk.ManifestConfig(splitting=split), caching=caching)


class StoreWriter:
    """Appends :class:`StoredBatch`es to a new or resumed store; holds the writer lock until ``close``.

    Not thread-safe: one writer thread owns it (and so every chunk); it hands whole chunks to
    ``config.io_threads`` I/O threads to compress, checksum and store, and waits for them before each commit.
    """

    def __init__(
        self, location: StoreLocation, repo: icechunk.Repository, lock: WriterLock, config: WriterConfig
    ) -> None:
        self.location = location
        self.path = str(location)
        self.repo = repo
        self.lock = lock
        self.config = config
        self.pool = ChunkPool(config.io_threads)
        self._open_session()
        self.attrs: dict = dict(self.group.attrs["attnx"])
        self.commit = Commit.from_json(self.attrs["commit"], self.path)
        self.payload = Payload.from_attrs(self.attrs)
        self.has_words = bool(self.attrs.get("conllu"))
        self.layers, self.heads = len(self.attrs["layers"]), len(self.attrs["heads"])
        pool = self.pool
        self.streams = {self.payload.array: array_stream(self._arrays[self.payload.array], self.commit.attn, pool)}
        for name in REC_ARRAYS:
            self.streams[name] = array_stream(self._arrays[name], self.commit.records, pool)
        for name in TOK_ARRAYS:
            self.streams[name] = array_stream(self._arrays[name], self.commit.tokens, pool)
        if self.has_words:
            for name in WORD_ARRAYS:
                self.streams[name] = array_stream(self._arrays[name], self.commit.words, pool)
        self.records = self.commit.records
        self._words = self.commit.words
        self._window = (self.commit.input_window, self.commit.input_digest)
        self._since_bytes = 0
        self._since_time = time.monotonic()
        self._records_at_commit = self.records
        # deprel strings -> ids, numbered by first appearance in physical order (deterministic on resume)
        self.deprels: list[str] = list(self.attrs.get("deprels", []))
        self._deprel_id = {d: k for k, d in enumerate(self.deprels)}

    def _array_names(self) -> list[str]:
        attrs = self.group.attrs["attnx"]
        return [Payload.from_attrs(attrs).array, *small_arrays(bool(attrs.get("conllu")))]

    def _open_session(self) -> None:
        self.session = self.repo.writable_session(BRANCH)
        self.group = zarr.open_group(store=self.session.store, mode="r+", zarr_format=3)
        streams = getattr(self, "streams", {})
        if streams:
            # after a commit: the same arrays in the new session, from the metadata this writer committed
            # (opening each from the store is a metadata read through zarr's event loop per array, about
            # 10 ms a commit for 14 arrays, while the I/O threads have nothing to encode)
            self._arrays = {name: in_session(stream.array, self.session.store) for name, stream in streams.items()}
        else:
            self._arrays = {name: every_chunk(self.group[name]) for name in self._array_names()}
        for name, stream in streams.items():
            stream.array = self._arrays[name]

    # -- creation -------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        location: StoreLocation | str,
        meta: dict,
        vocab: list[str],
        dtype: str,
        codec: str,
        attn_chunk_elems: int,
        record_chunk: int,
        token_chunk: int,
        codec_level: int | None = None,
        conllu: bool = False,
        payload: Payload | None = None,
        config: WriterConfig | None = None,
        lock: WriterLock | None = None,
    ) -> StoreWriter:
        """Create an empty store (one Icechunk commit). The location must be free, an empty folder, or a
        repository holding only Icechunk's initial commit (a creation that was killed). ``lock``: the writer
        lock if the caller already holds it (else it is taken here); the writer releases it on ``close``.
        """
        location = StoreLocation.parse(location)
        lock = lock or WriterLock(location).acquire()
        payload = payload or Payload.maps()
        if payload.kind == "features":
            dtype = "float32"
        codec, level = resolve_codec(codec, dtype, codec_level)
        np_dtype = stored_dtype(dtype).storage
        try:
            repo = _fresh_repository(location)
        except BaseException:
            lock.release()
            raise
        try:
            session = repo.writable_session(BRANCH)
            group = zarr.group(store=session.store, zarr_format=3)
            group.create_array(
                payload.array,
                shape=(0,),
                chunks=(attn_chunk_elems,),
                dtype=np_dtype,
                fill_value=0,
                dimension_names=[dimension(payload.array)],
                **codecs(codec, np_dtype, level),
            )
            for name, dt in small_arrays(conllu).items():
                chunk = record_chunk if name.startswith("rec/") else token_chunk
                group.create_array(
                    name,
                    shape=(0,),
                    chunks=(chunk,),
                    dtype=dt,
                    fill_value=0,
                    dimension_names=[dimension(name)],
                    **codecs("zstd", dt, 3),
                )
            group["tok"].attrs["vocab"] = list(vocab)
            attrs = {
                "format": FORMAT,
                **meta,
                "dtype": dtype,
                "codec": codec,
                "codec_level": level,
                "scale": stored_dtype(dtype).scale,  # stored value * scale = probability
                "conllu": conllu,
                "vocab_sha256": vocab_digest(list(vocab)),
                **payload.to_attrs(),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "complete": False,
                "commit": Commit().to_json(),
            }
            group.attrs["attnx"] = validate.seal(attrs)
            session.commit("attnx: create store", metadata={"records": 0, "records_added": 0})
        except BaseException as exc:
            lock.release()
            if isinstance(exc, StoreError | KeyboardInterrupt):
                raise
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
            raise StoreError(f"{location}: cannot create store ({why})") from None
        return cls(location, repo, lock, config or WriterConfig())

    @classmethod
    def resume(
        cls, location: StoreLocation | str, config: WriterConfig | None = None, lock: WriterLock | None = None
    ) -> StoreWriter:
        """Continue an incomplete store from its last commit (taking the writer lock unless given)."""
        location = StoreLocation.parse(location)
        lock = lock or WriterLock(location).acquire()
        try:
            return cls(location, open_repository(location), lock, config or WriterConfig())
        except BaseException:
            lock.release()
            raise

    # -- appending ------------------------------------------------------------------------------------------
    def append(self, batch: StoredBatch) -> None:
        """Append a batch; commits once ``commit_bytes`` or ``commit_seconds`` have passed since the last."""
        s = self.streams
        start = {"payload": s[self.payload.array].total, "tok": s["tok/ids"].total, "words": self._words}
        arrays = batch_arrays(
            batch, self.payload, self.layers, self.heads, start, self._deprel_ids if self.has_words else None
        )
        for name, values in arrays.items():
            s[name].append(values)
        if self.has_words:
            self._words += len(arrays["words/head"])
        self.records += len(batch.input_id)
        if batch.input_window >= self._window[0]:
            self._window = (batch.input_window, batch.input_digest)
        for stream in s.values():
            stream.flush(partial=False, min_chunks=self.config.flush_chunks)
        self._since_bytes += batch.attn.nbytes
        self.maybe_commit()

    def maybe_commit(self) -> None:
        """Commit if ``commit_bytes`` or ``commit_seconds`` have passed since the last commit."""
        if (
            self._since_bytes >= self.config.commit_bytes
            or time.monotonic() - self._since_time >= self.config.commit_seconds
        ):
            self.commit_now()

    # -- distributed runs: shards written by workers through forks of this writer's session ------------------
    def totals(self) -> dict[str, int]:
        """Elements appended so far to each array (committed or not)."""
        return {name: stream.total for name, stream in self.streams.items()}

    def reserve(self, ends: dict[str, int]) -> None:
        """Grow arrays so that regions up to ``ends[name]`` exist for workers to write into (at the next
        commit); readers never look past the commit's counts, and ``finish`` trims the rest."""
        for name, end in ends.items():
            array = self.streams[name].array
            if end > array.shape[0]:
                array.resize((end,))

    def fork(self) -> icechunk.session.ForkSession:
        """A session for a worker to write its shard's whole chunks; its base is the last commit."""
        self.pool.drain()
        if self.session.has_uncommitted_changes:
            raise StoreError(f"{self.path}: cannot fork a session with uncommitted changes")
        return self.session.fork()

    def merge_shard(
        self, fork: icechunk.session.ForkSession, edges: dict[str, tuple[np.ndarray, int, np.ndarray]], shard: dict
    ) -> None:
        """Take a finished shard: its worker's chunks (``fork``) and, per array, ``(head, interior_end, tail)``:
        the elements before its first chunk boundary, where its whole chunks end (or -1 when it wrote none),
        the elements after. ``shard``: records, words, last input window and the digest at its end, deprels."""
        self.pool.drain()
        self.session.merge(fork)
        for name, (head, interior_end, tail) in edges.items():
            stream = self.streams[name]
            stream.append(head)
            if interior_end >= 0:
                stream.skip_written(interior_end)
            stream.append(tail)
        for stream in self.streams.values():
            stream.flush(partial=False, min_chunks=self.config.flush_chunks)
        self.records += int(shard["records"])
        self._words += int(shard["words"])
        self._window = (int(shard["input_window"]), str(shard["input_digest"]))
        for name in shard.get("deprels", []):
            if name not in self._deprel_id:
                self._deprel_id[name] = len(self.deprels)
                self.deprels.append(name)
        self._since_bytes += int(shard["payload_bytes"])

    def _deprel_ids(self, names: np.ndarray) -> np.ndarray:
        ids = np.empty(len(names), np.int16)
        for k, name in enumerate(names):
            idx = self._deprel_id.get(name)
            if idx is None:
                idx = self._deprel_id[name] = len(self.deprels)
                self.deprels.append(name)
            ids[k] = idx
        return ids

    def commit_now(
        self, extra_attrs: dict | None = None, message: str | None = None, force: bool = False, trim: bool = False
    ) -> None:
        """Write every tail and commit everything appended so far as one Icechunk snapshot. ``force``: commit
        even with no new records (reservations for a distributed run); ``trim``: shrink reserved arrays."""
        self.pool.check()  # a lost chunk write is never committed over, even by a commit with nothing new
        if self.records == self.commit.records and not extra_attrs and not force:
            return
        for stream in self.streams.values():
            stream.flush(partial=True)
            if trim:
                stream.trim()
        self.pool.drain()  # every chunk this commit counts is stored (or the commit is not made)
        commit = Commit(
            records=self.records,
            attn=self.streams[self.payload.array].total,
            tokens=self.streams["tok/ids"].total,
            words=self._words,
            input_window=self._window[0],
            input_digest=self._window[1],
        )
        self.attrs = {**self.attrs, "commit": commit.to_json(), "deprels": list(self.deprels), **(extra_attrs or {})}
        self.group.attrs["attnx"] = self.attrs = validate.seal(self.attrs)
        added = commit.records - self._records_at_commit
        try:
            with warnings.catch_warnings():
                # forks handed to workers are merged into a later session: Icechunk supports that, and warns
                warnings.filterwarnings("ignore", "Committing a session after forking")
                self.session.commit(
                    message or f"attnx: {commit.records} records (+{added})",
                    metadata={"records": commit.records, "records_added": added, "attn_elements": commit.attn},
                )
        except icechunk.ConflictError:
            raise StoreError(f"{self.path}: another writer committed to this store meanwhile; stopped") from None
        self.commit = commit
        self._records_at_commit = commit.records
        self._since_bytes = 0
        self._since_time = time.monotonic()
        self._open_session()

    def finish(self, extra_attrs: dict | None = None) -> None:
        """Commit the rest with the input-order index and mark the store complete (one final commit)."""
        input_id = self.streams["rec/input_id"].values()
        position = np.full(len(input_id), -1, np.int64)
        if len(input_id):
            if input_id.min() < 0 or input_id.max() >= len(input_id):
                raise StoreError(f"{self.path}: input ids are not 0..{len(input_id) - 1}; store left incomplete")
            position[input_id] = np.arange(len(input_id))
        if INDEX_ARRAY in self.group:
            del self.group[INDEX_ARRAY]
        self.group.create_array(
            INDEX_ARRAY,
            data=position,
            chunks=(max(1, min(len(position), 1 << 20)),),
            dimension_names=[dimension(INDEX_ARRAY)],
            config=EVERY_CHUNK,
            **codecs("zstd", np.int64, 3),
        )
        self.commit_now(
            {"complete": True, **(extra_attrs or {})}, message=f"attnx: complete, {self.records} records", trim=True
        )
        self.close()

    def close(self) -> None:
        """Release the lock; anything not committed is dropped (unreachable objects, never read)."""
        try:
            self.pool.close()
        finally:
            self.lock.release()


def _has_commits(repo: icechunk.Repository) -> bool:
    """More than Icechunk's initial commit: a creation killed before its first commit leaves only that."""
    return len(list(repo.ancestry(branch=BRANCH))) > 1


def holds_store(location: StoreLocation) -> bool:
    """True where an attnx store was created (a bare repository is created again)."""
    return location.exists() and _has_commits(open_repository(location))


def _fresh_repository(location: StoreLocation) -> icechunk.Repository:
    """A new repository at ``location``, or the existing one if a killed creation left only its first commit."""
    local = location.local
    storage = location.storage()
    try:
        if location.is_format_1():
            raise StoreError(f"{location}: a format-1 store (attnx 0.1) is here; convert it or use --overwrite")
        if location.exists():
            repo = icechunk.Repository.open(storage, config=_repo_config())
            if _has_commits(repo):
                raise StoreError(f"{location}: a store exists here; refusing to overwrite it")
            return repo
        if local is not None and local.exists() and (not local.is_dir() or any(local.iterdir())):
            raise StoreError(f"{location}: exists and is not an attnx store; refusing to overwrite it")
        return icechunk.Repository.create(storage, config=_repo_config())
    except StoreError:
        raise
    except OSError as exc:
        raise StoreError(f"{location}: cannot create store ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - Icechunk's storage errors become one line
        raise StoreError(f"{location}: cannot create store ({_first_line(exc)})") from None
