"""The store on its own: round trips, ragged layout, commits and resume, checksums, block streaming."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from helpers.stores import HEADS, LAYERS, create, expected, make_batches, written

from attnx.errors import StoreError
from attnx.store import StoredBatch, StoreWriter, WriterConfig, open_store


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_round_trip_every_dtype(tmp_path, dtype):
    batches = make_batches(0, 6, 9, dtype)
    store = written(tmp_path / "s.zarr", batches, dtype)
    assert len(store) == 54 and store.complete
    want = expected(batches)
    scale = 1 / 255 if dtype == "uint8" else 1.0
    for rid, flat in want.items():
        got = store.attention(rid)
        l = got.shape[-1]
        assert got.shape == (LAYERS, HEADS, l, l) and got.dtype == np.float32
        np.testing.assert_array_equal(got.ravel(), flat.astype(np.float32) * np.float32(scale))
    assert store.lengths.tolist() == [int(np.sqrt(len(want[i]) // (LAYERS * HEADS))) for i in range(54)]


def test_blocks_cover_every_record_once_in_physical_order(tmp_path):
    batches = make_batches(1, 5, 11, "float16")
    store = written(tmp_path / "s.zarr", batches, "float16")
    want = expected(batches)
    seen = []
    for block in store.blocks(max_bytes=3000):
        for k, rid in enumerate(block.record_ids):
            flat = block.attn[block.attn_offsets[k] : block.attn_offsets[k + 1]]
            np.testing.assert_array_equal(flat, want[int(rid)])
            toks = block.token_ids[block.tok_offsets[k] : block.tok_offsets[k + 1]]
            np.testing.assert_array_equal(toks, store.token_ids(int(rid)))
        seen.extend(block.record_ids.tolist())
    assert seen == np.concatenate([b.input_id for b in batches]).tolist()
    subset = [3, 40, 41, 7]
    got = [int(r) for blk in store.blocks(max_bytes=3000, records=subset) for r in blk.record_ids]
    assert sorted(got) == sorted(subset)


@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_physical_order_and_payload_bytes_are_public(tmp_path, dtype):
    """``physical_ids`` / ``physical_payload_nbytes``: the order blocks stream records in and each one's stored
    bytes, read-only (what scaleout plans its tasks on)."""
    batches = make_batches(2, 3, 7, dtype)
    store = written(tmp_path / "s.zarr", batches, dtype)
    ids, nbytes = store.physical_ids, store.physical_payload_nbytes
    assert ids.tolist() == np.concatenate([b.input_id for b in batches]).tolist()
    blocks = list(store.blocks(max_bytes=1 << 20))
    assert nbytes.tolist() == [int(x) for b in blocks for x in np.diff(b.attn_offsets) * b.attn.itemsize]
    with pytest.raises(ValueError, match="read-only"):
        ids[0] = 1



@pytest.mark.parametrize("threads", [1, 2])
def test_blocks_with_reused_buffers_equal_fresh_ones(tmp_path, threads):
    """``blocks(reuse=True)`` decodes into buffers used again: every block, taken when it is yielded, equals
    the fresh read, across many blocks of different sizes (so buffers hold an older, longer block's values)."""
    batches = make_batches(1, 5, 11, "float16")
    store = written(tmp_path / "s.zarr", batches, "float16")
    fresh = [(blk.record_ids.copy(), blk.attn.copy(), blk.token_ids.copy()) for blk in store.blocks(max_bytes=3000)]
    reused = [(blk.record_ids.copy(), blk.attn.copy(), blk.token_ids.copy())
              for blk in store.blocks(max_bytes=3000, threads=threads, reuse=True)]
    assert len(fresh) == len(reused) > 5
    for (ids_a, attn_a, tok_a), (ids_b, attn_b, tok_b) in zip(fresh, reused, strict=True):
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_array_equal(attn_a, attn_b)
        np.testing.assert_array_equal(tok_a, tok_b)


def test_reading_into_a_used_buffer_fills_chunks_never_written(tmp_path):
    """What ``reuse`` relies on: zarr writes the fill value into ``out`` for a chunk that was never written
    (all-zero chunks are not stored), so a reused buffer never leaks an older block's values."""
    from zarr.core.buffer.cpu import NDBuffer

    arr = zarr.create_array(zarr.storage.LocalStore(tmp_path), shape=(40,), chunks=(10,), dtype="float16",
                            fill_value=0, config={"write_empty_chunks": False})
    values = np.arange(1, 41, dtype=np.float16)
    values[10:20] = 0  # chunk 1 is all fill value: not stored
    arr[:] = values
    assert (tmp_path / "c" / "0").exists() and not (tmp_path / "c" / "1").exists()
    out = np.full(40, 7, np.float16)
    arr.get_orthogonal_selection((slice(0, 40),), out=NDBuffer.from_numpy_array(out))
    np.testing.assert_array_equal(out, values)


def test_tokens_and_words_round_trip(tmp_path):
    batches = make_batches(2, 4, 6, "float16", conllu=True)
    store = written(tmp_path / "s.zarr", batches, "float16", conllu=True)
    b0 = batches[0]
    rid = int(b0.input_id[2])
    t0 = int(b0.length[:2].sum())
    l = int(b0.length[2])
    assert store.token_ids(rid).tolist() == b0.tokens["ids"][t0 : t0 + l].tolist()
    assert store.tokens(rid) == [f"t{i}" for i in b0.tokens["ids"][t0 : t0 + l]]
    w0 = int(b0.word_count[:2].sum())
    heads, deprels = store.dependencies(rid)
    assert heads.tolist() == b0.words["head"][w0 : w0 + int(b0.word_count[2])].tolist()
    assert [store.deprels[d] for d in deprels] == list(b0.words["deprel"][w0 : w0 + int(b0.word_count[2])])


def test_interrupted_writer_resumes_to_identical_store(tmp_path):
    batches = make_batches(3, 8, 10, "float16", conllu=True)
    ref = create(tmp_path / "ref.zarr", "float16", conllu=True)
    for b in batches:
        ref.append(b)
    ref.finish()

    w = create(tmp_path / "cut.zarr", "float16", conllu=True)
    for b in batches[:3]:
        w.append(b)  # each append commits (commit_bytes=1)
    committed = w.commit.records
    w.config = WriterConfig(commit_bytes=1 << 40, commit_seconds=1e9)
    for b in batches[3:5]:
        w.append(b)  # written into the session, never committed: a crash loses only these
    assert w.records > committed == w.commit.records
    w.close()
    partial = open_store(tmp_path / "cut.zarr")
    assert len(partial) == committed == 30 and not partial.complete

    w = StoreWriter.resume(tmp_path / "cut.zarr")
    flat = {
        k: np.concatenate([getattr(b, k) for b in batches])
        for k in ("input_id", "length", "len_a", "line", "truncated")
    }
    # replay from the first uncommitted record, exactly as the engine does
    rest = _slice_records(batches, committed)
    w.append(rest)
    w.finish()
    a, b = open_store(tmp_path / "ref.zarr").group, open_store(tmp_path / "cut.zarr").group
    for name in [
        "attn",
        "rec/input_id",
        "rec/attn_start",
        "rec/length",
        "rec/tok_start",
        "rec/word_start",
        "tok/ids",
        "tok/word",
        "words/head",
        "words/deprel",
        "index/position",
    ]:
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    assert a.attrs["attnx"]["deprels"] == b.attrs["attnx"]["deprels"]
    assert len(flat["input_id"]) == 80


def _slice_records(batches: list[StoredBatch], start: int) -> StoredBatch:
    """All records from physical position ``start`` on, as one batch."""
    cat = lambda key: np.concatenate([getattr(b, key) for b in batches])  # noqa: E731
    lengths = cat("length")
    sizes = LAYERS * HEADS * lengths.astype(np.int64) ** 2
    t0 = int(lengths[:start].sum())
    counts = cat("word_count")
    w0 = int(counts[:start].sum())
    return StoredBatch(
        attn=cat("attn")[int(sizes[:start].sum()) :],
        input_id=cat("input_id")[start:],
        length=lengths[start:],
        len_a=cat("len_a")[start:],
        line=cat("line")[start:],
        truncated=cat("truncated")[start:],
        tokens={k: np.concatenate([b.tokens[k] for b in batches])[t0:] for k in batches[0].tokens},
        words={k: np.concatenate([b.words[k] for b in batches])[w0:] for k in batches[0].words},
        word_count=counts[start:],
    )


def test_corrupt_chunk_is_detected(tmp_path):
    batches = make_batches(4, 3, 8, "float16")
    w = create(tmp_path / "s.zarr", "float16")
    for b in batches:
        w.append(b)
    w.finish()
    chunk = max((tmp_path / "s.zarr" / "chunks").iterdir(), key=lambda f: f.stat().st_size)  # an attn chunk
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    store = open_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match=r"cannot read attn \(records .*checksum"):
        list(store.blocks())


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="no attnx store here"):
        open_store(tmp_path / "nothing.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreError, match="no attnx store here"):
        open_store(tmp_path / "plain.zarr")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(StoreError, match="refusing to overwrite"):
        create(tmp_path / "full", "float16")


def test_derived_results_round_trip(tmp_path):
    batches = make_batches(5, 3, 7, "float32")
    store = written(tmp_path / "s.zarr", batches, "float32")
    dw = store.derived_writer("mean_map", "float32")
    for block in store.blocks(max_bytes=2000):
        maps = [block.record_maps(k).mean(axis=(0, 1)) for k in range(len(block))]
        dw.append(np.concatenate([m.ravel() for m in maps]), block.lengths.astype(np.int64) ** 2)
    dw.finish({"definition": "mean over layers and heads"})
    store = open_store(tmp_path / "s.zarr")
    assert store.derived_names() == ["mean_map"]
    for i in (0, 9, 20):
        np.testing.assert_allclose(store.derived("mean_map", i), store.attention(i).mean(axis=(0, 1)), rtol=1e-6)
    with pytest.raises(StoreError, match="no complete derived result"):
        store.derived("other", 0)


def test_writer_does_not_depend_on_the_process_wide_zarr_config(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunk is written (fill-valued ones too: here the all-zero chunks of ``tok/segment``) whatever zarr's
    process-wide config says: another thread's ``zarr.config.set`` context (an in-process Dask worker's writer)
    may reset it at any moment, which made the writer refuse its own arrays ("codecs changed between
    sessions") in a full test run. Emulated: the global setting is off and ``zarr.config.set`` does nothing."""
    import contextlib

    from click.testing import CliRunner

    from attnx.cli.main import main

    with zarr.config.set({"array.write_empty_chunks": False}):
        monkeypatch.setattr(zarr.config, "set", lambda *a, **k: contextlib.nullcontext())
        batches = make_batches(3, 3, 10, "float16")
        store = written(tmp_path / "s.zarr", batches, "float16")
        monkeypatch.undo()
    assert len(store) == 30
    r = CliRunner().invoke(main, ["verify", str(tmp_path / "s.zarr")])
    assert r.exit_code == 0, r.output
