"""The writer's I/O threads (attnx.store.chunk_writer): the same store bytes as zarr's own path, every chunk stored
before a commit counts it, a failed chunk write is never committed over, and the knob is validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers.stores import META, make_batches

from attnx.config import io_threads, load_config
from attnx.errors import AttnxError
from attnx.store import StoreWriter, WriterConfig, open_store
from attnx.store.append import PooledArrayStream, array_stream, every_chunk
from attnx.store.chunk_writer import ChunkEncoder, ChunkPool
from attnx.store.location import StoreLocation
from attnx.store.writer import open_repository
from attnx.threads import default_io_threads


def _store(path: Path, batches: list, threads: int, codec: str, dtype: str) -> None:
    w = StoreWriter.create(
        path,
        META,
        [f"t{i}" for i in range(50)],
        dtype,
        codec,
        attn_chunk_elems=997,
        record_chunk=7,
        token_chunk=13,
        config=WriterConfig(commit_bytes=2000, io_threads=threads),
    )
    for b in batches:
        w.append(b)
    w.finish()


def _chunk_bytes(path: Path) -> dict[str, bytes]:
    """Every chunk of every array at the newest commit, by key."""
    repo = open_repository(StoreLocation.parse(path))
    store = repo.readonly_session(branch="main").store
    group = zarr.open_group(store=store, mode="r", zarr_format=3)
    out = {}
    prototype = zarr.core.buffer.default_buffer_prototype()
    for _, array in group.members(max_depth=None):
        if isinstance(array, zarr.Array):
            for k in range(array.nchunks):
                key = f"{array.path}/c/{k}"
                out[key] = zarr.core.sync.sync(store.get(key, prototype)).to_bytes()
    return out


@pytest.mark.parametrize(("codec", "dtype"), [("blosc-lz4", "float16"), ("zstd", "uint8"), ("blosc-zstd", "q12")])
def test_pool_writes_the_bytes_zarr_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str, dtype: str):
    batches = make_batches(3, 12, 9, "uint8" if dtype == "uint8" else "float32")
    if dtype == "q12":
        batches = [
            type(b)(**{**b.__dict__, "attn": np.round(b.attn.astype(np.float64) * 4095).astype(np.uint16)})
            for b in batches
        ]
    elif dtype == "float16":
        batches = [type(b)(**{**b.__dict__, "attn": b.attn.astype(np.float16)}) for b in batches]
    _store(tmp_path / "pool.zarr", batches, 2, codec, dtype)
    monkeypatch.setattr(ChunkEncoder, "of", classmethod(lambda cls, array: None))  # zarr's own path
    _store(tmp_path / "zarr.zarr", batches, 2, codec, dtype)
    pool, ref = _chunk_bytes(tmp_path / "pool.zarr"), _chunk_bytes(tmp_path / "zarr.zarr")
    assert len(ref) > 20 and pool.keys() == ref.keys()
    assert all(pool[k] == ref[k] for k in ref)
    s = open_store(tmp_path / "pool.zarr")
    assert len(s) == 12 * 9


def test_commit_waits_for_every_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Chunks encoded slowly on the pool, and stored slowly after it (the I/O thread does not wait for the
    store), are all in the commit that counts them."""
    import asyncio
    import time

    write, store_chunk = ChunkEncoder.write, ChunkEncoder._store_chunk

    def slow(self, k, values):  # noqa: ANN001, ANN202
        time.sleep(0.01)
        return write(self, k, values)

    async def slow_store(self, key, data):  # noqa: ANN001, ANN202
        await asyncio.sleep(0.02)
        return await store_chunk(self, key, data)

    monkeypatch.setattr(ChunkEncoder, "write", slow)
    monkeypatch.setattr(ChunkEncoder, "_store_chunk", slow_store)
    batches = make_batches(5, 10, 8, "float32")
    _store(tmp_path / "s.zarr", batches, 3, "blosc-lz4", "float32")
    s = open_store(tmp_path / "s.zarr")
    from attnx import verify

    verify(tmp_path / "s.zarr")
    assert len(s) == 80


@pytest.mark.parametrize("where", ["encode", "store"])
def test_failed_chunk_write_is_never_committed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str):
    """A chunk whose encode (on the I/O thread) or whose store (on zarr's event loop, after the I/O thread has
    moved on) fails is never committed over."""
    w = StoreWriter.create(
        tmp_path / "s.zarr",
        META,
        [f"t{i}" for i in range(50)],
        "float32",
        "blosc-lz4",
        attn_chunk_elems=997,
        record_chunk=7,
        token_chunk=13,
        config=WriterConfig(commit_bytes=1 << 40, commit_seconds=1e9, io_threads=2),
    )
    batches = make_batches(1, 6, 8, "float32")
    w.append(batches[0])
    w.commit_now()
    committed = w.commit.records

    write, store_chunk, failed = ChunkEncoder.write, ChunkEncoder._store_chunk, []

    def fails_once(self, k, values):  # noqa: ANN001, ANN202
        if not failed:
            failed.append(k)
            raise OSError(28, "No space left on device")
        return write(self, k, values)

    async def store_fails_once(self, key, data):  # noqa: ANN001, ANN202
        if not failed:
            failed.append(key)
            raise OSError(28, "No space left on device")
        return await store_chunk(self, key, data)

    if where == "encode":
        monkeypatch.setattr(ChunkEncoder, "write", fails_once)
    else:
        monkeypatch.setattr(ChunkEncoder, "_store_chunk", store_fails_once)
    with pytest.raises(OSError, match="No space left"):
        for b in batches[1:]:
            w.append(b)
        w.commit_now()
    # every other chunk is stored now, but one a commit would count is lost: the failure sticks
    with pytest.raises(OSError, match="No space left"):
        w.commit_now()
    w.close()
    assert len(open_store(tmp_path / "s.zarr")) == committed


def test_stream_copies_views_it_hands_to_the_pool(tmp_path: Path):
    """A caller may reuse its batch buffer once append returns: the pool must not read it later."""
    group = zarr.group(store=zarr.storage.LocalStore(tmp_path / "z"), zarr_format=3)
    group.create_array("a", shape=(0,), chunks=(100,), dtype="float32", fill_value=0)
    array = every_chunk(zarr.open_array(store=zarr.storage.LocalStore(tmp_path / "z"), path="a", mode="r+"))
    pool = ChunkPool(1)
    stream = array_stream(array, 0, pool)
    assert isinstance(stream, PooledArrayStream)
    buf = np.arange(250, dtype=np.float32)
    stream.append(buf)
    stream.flush(partial=False)
    buf[:] = -1  # reused by the caller
    stream.drain()
    np.testing.assert_array_equal(array[:200], np.arange(200, dtype=np.float32))
    pool.close()


def test_io_threads_knob(monkeypatch: pytest.MonkeyPatch):
    assert default_io_threads(2) == 1 and default_io_threads(16) == 14 and default_io_threads(64) == 16
    monkeypatch.setenv("ATTNX_IO_THREADS", "3")
    assert io_threads(load_config()) == 3
    monkeypatch.setenv("ATTNX_IO_THREADS", "-1")
    with pytest.raises(AttnxError, match="ATTNX_IO_THREADS='-1': must be 0..256"):
        load_config()
    monkeypatch.setenv("ATTNX_IO_THREADS", "0")
    assert io_threads(load_config()) == default_io_threads()
    with pytest.raises(ValueError, match="io threads"):
        ChunkPool(0)
