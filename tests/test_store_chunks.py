"""The store's own chunk reader (attnx.store.chunk_reader): same values as zarr's path, every fault still an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers.stores import HEADS, LAYERS, META, expected, make_batches
from zarr.core.sync import sync

from attnx.errors import StoreError
from attnx.store import StoreWriter, WriterConfig, open_store
from attnx.store.chunk_reader import ChunkError, ChunkReader


def _written(path: Path, dtype: str, codec: str, seed: int = 3):  # noqa: ANN202 - (AttentionStore, batches)
    batches = make_batches(seed, 4, 9, dtype)
    w = StoreWriter.create(path, META, [f"t{i}" for i in range(50)], dtype, codec, attn_chunk_elems=997,
                           record_chunk=7, token_chunk=13, config=WriterConfig(commit_bytes=1))
    for b in batches:
        w.append(b)
    w.finish()
    return open_store(path), batches


@pytest.mark.parametrize(("dtype", "codec"), [("float16", "blosc-lz4"), ("float16", "blosc-zstd"),
                                              ("float32", "zstd"), ("uint8", "none")])
def test_chunk_reader_equals_zarr_on_every_array(tmp_path: Path, dtype: str, codec: str) -> None:
    store, _ = _written(tmp_path / "s.zarr", dtype, codec)
    rng = np.random.default_rng(0)
    for name, array in store._arrays.items():
        reader = ChunkReader.for_array(array)
        assert reader is not None, name
        n = array.shape[0]
        spans = [(0, n), (0, 1), (n - 1, n), (5, 5)] + [tuple(sorted(rng.integers(0, n + 1, 2))) for _ in range(20)]
        for a, b in spans:
            np.testing.assert_array_equal(reader.read(a, b), np.asarray(array[a:b]), err_msg=f"{name} {a}..{b}")
        out = np.full(n + 10, 7, array.dtype)
        got = reader.read(3, n - 2, out=out)
        assert np.shares_memory(got, out)
        np.testing.assert_array_equal(out[: n - 5], np.asarray(array[3 : n - 2]))


def test_blocks_and_maps_do_not_use_zarrs_codec_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read of a default store goes through ChunkReader (fetch raw chunks, decode here), not zarr's
    per-chunk decode; the values are those written."""
    store, batches = _written(tmp_path / "s.zarr", "float16", "blosc-lz4")
    want = expected(batches)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("zarr's read path was used")

    monkeypatch.setattr(zarr.core.array.AsyncArray, "getitem", refuse)
    monkeypatch.setattr(zarr.core.array.AsyncArray, "get_orthogonal_selection", refuse)
    again = open_store(tmp_path / "s.zarr")
    for threads in (1, 2):
        for block in again.blocks(max_bytes=3000, threads=threads, reuse=True):
            for k, rid in enumerate(block.record_ids):
                np.testing.assert_array_equal(block.attn[block.attn_offsets[k] : block.attn_offsets[k + 1]],
                                              want[int(rid)])
    l = int(again.lengths[4])
    assert again.attention(4).shape == (LAYERS, HEADS, l, l)


def test_a_missing_or_corrupt_chunk_is_an_error_never_a_fill_value(tmp_path: Path) -> None:
    store, _ = _written(tmp_path / "s.zarr", "float16", "blosc-lz4")
    reader = store._reads.chunk_readers["attn"]
    raws = sync(reader.fetch(0, 2000))
    good = reader.decode(raws, 0, 2000)
    with pytest.raises(ChunkError, match="chunk 1 is missing"):
        reader.decode([raws[0], None, raws[2]], 0, 2000)
    flipped = raws[1].copy()
    flipped[len(flipped) // 2] ^= 0x20
    with pytest.raises(ChunkError, match="chunk 1: stored and computed checksum do not match"):
        reader.decode([raws[0], flipped, raws[2]], 0, 2000)
    with pytest.raises(ChunkError, match="chunk 0 is truncated"):
        reader.decode([raws[0][:3], raws[1], raws[2]], 0, 2000)
    np.testing.assert_array_equal(good, np.asarray(store._arrays["attn"][0:2000]))
    with pytest.raises(StoreError, match=r"cannot read attn \(.*\): elements 0\.\.\d+ out of range"):
        store._reads.read("attn", 0, store._arrays["attn"].shape[0] + 1)


def test_the_cli_keeps_freed_heap_pages_and_the_library_leaves_malloc_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attnx command asks glibc to keep freed pages (each chunk object is a fresh buffer; unmapping them made
    every page fault in again), once per process; streaming blocks from Python changes no process-wide setting."""
    import sys

    from attnx import memory
    from attnx.cli import main as cli_main

    store, _ = _written(tmp_path / "s.zarr", "float16", "blosc-lz4")
    calls = []
    monkeypatch.setattr(memory, "keep_freed_heap_pages", lambda: calls.append(1) or True)
    monkeypatch.setattr(cli_main, "_quiet_store_noise", lambda: None)  # the command's hooks: not this process's
    assert sum(len(b) for b in store.blocks(max_bytes=3000)) == len(store)
    assert calls == []
    cli_main.main.callback()
    assert calls == [1]
    monkeypatch.undo()
    if sys.platform == "linux":
        assert memory.keep_freed_heap_pages() and memory.keep_freed_heap_pages()
