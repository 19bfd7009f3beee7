"""The engine end to end (in process): order, subsets, truncation, windows, refusals, disk full."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from helpers.paths import SAMPLE, shared_file

from attnx.config import load_config
from attnx.engine.extract import ExtractOptions, extract
from attnx.errors import AttnxError, AttnxWarning, InputError, StoreError
from attnx.store import open_store


@pytest.fixture
def corpus(tmp_path):
    lines = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:70]
    lines[5] = ""  # an empty line stays a record of length 2
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def test_input_order_restored_across_windows(tmp_path, corpus, minilm):
    path, lines = corpus
    cfg = load_config(window_records=16, cpu_attn_budget_bytes=4 << 20)
    s = extract(ExtractOptions(input=str(path), output=str(tmp_path / "o.zarr"), device="cpu"), config=cfg)
    assert s.records == 70 and s.batches > 5
    store = open_store(tmp_path / "o.zarr")
    for i in (0, 5, 17, 69):
        assert store.tokens(i) == minilm.tokenizer.convert_ids_to_tokens(minilm.tokenizer(lines[i])["input_ids"])
    assert store.lengths[5] == 2 and store.lines[5] == 6
    physical = np.asarray(store.group["rec/length"][:])
    assert not np.all(np.diff(physical) >= 0)  # sorted per window, not globally ...
    assert all(np.all(np.diff(physical[k : k + 16]) >= 0) for k in range(0, 70, 16))  # ... but within each


def test_layer_and_head_subsets_equal_full_store(tmp_path, corpus):
    path, _ = corpus
    full = tmp_path / "full.zarr"
    sub = tmp_path / "sub.zarr"
    pinned = dict(dtype="float32", device="cpu", backend="torch")  # the capture path's subsets; onnx: test_onnx_backend
    extract(ExtractOptions(input=str(path), output=str(full), **pinned))
    extract(ExtractOptions(input=str(path), output=str(sub), layers=(1, 3), heads=(0, 7, 11), **pinned))
    a, b = open_store(full), open_store(sub)
    assert b.layers == [1, 3] and b.heads == [0, 7, 11]
    for i in (0, 12, 44):
        np.testing.assert_allclose(b.attention(i), a.attention(i)[[1, 3]][:, [0, 7, 11]], atol=1e-6)


def test_truncation_flag_and_no_truncate(tmp_path, corpus):
    path, lines = corpus
    with pytest.warns(AttnxWarning, match=r"\d+ of 70 records were longer than --max-length 12 and were cut"):
        extract(ExtractOptions(input=str(path), output=str(tmp_path / "t.zarr"), max_length=12, device="cpu"))
    store = open_store(tmp_path / "t.zarr")
    assert store.lengths.max() == 12
    assert store.truncated.sum() == sum(len(store.tokens(i)) == 12 and store.truncated[i] for i in range(70))
    assert store.truncated.sum() > 10 and store.tokens(0)[-1] == "[SEP]"
    with pytest.raises(InputError, match=r"c\.txt:\d+: \d+ wordpieces exceed --max-length 12"):
        extract(
            ExtractOptions(
                input=str(path), output=str(tmp_path / "nt.zarr"), max_length=12, truncate=False, device="cpu"
            )
        )


def test_complete_store_is_left_alone_and_other_options_refused(tmp_path, corpus):
    path, _ = corpus
    out = tmp_path / "o.zarr"
    extract(ExtractOptions(input=str(path), output=str(out), device="cpu", layers=(0,)))
    before = sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*"))
    again = extract(ExtractOptions(input=str(path), output=str(out), device="cpu", layers=(0,)))
    assert again.status == "already complete"
    assert sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*")) == before
    with pytest.raises(StoreError, match="different dtype"):
        extract(ExtractOptions(input=str(path), output=str(out), device="cpu", layers=(0,), dtype="uint8"))
    with pytest.raises(StoreError, match="different layers"):
        extract(ExtractOptions(input=str(path), output=str(out), device="cpu"))
    with pytest.raises(StoreError, match="different model"):
        extract(ExtractOptions(input=str(path), output=str(out), device="cpu", layers=(0,), model="random-bert-tiny"))
    other = tmp_path / "other.txt"
    other.write_text("something else entirely\n", encoding="utf-8")
    with pytest.raises(StoreError, match="different input"):
        extract(ExtractOptions(input=str(other), output=str(out), device="cpu", layers=(0,)))


def test_bad_input_midway_keeps_store_consistent(tmp_path, corpus):
    path, lines = corpus
    bad = tmp_path / "bad.txt"
    bad.write_bytes(("\n".join(lines[:40]) + "\n").encode() + b"\xc3\x28 broken\n")
    cfg = load_config(window_records=16, attn_chunk_elems=1 << 14)
    with pytest.raises(InputError, match=r"bad\.txt:41: invalid UTF-8"):
        extract(ExtractOptions(input=str(bad), output=str(tmp_path / "b.zarr"), device="cpu"), config=cfg)
    store = open_store(tmp_path / "b.zarr")  # readable: whatever was committed is intact
    assert not store.complete and 0 < len(store) <= 40
    for i in np.flatnonzero(store.position >= 0)[:5]:
        assert store.attention(int(i)).shape[-1] == store.lengths[i]


def test_disk_full_is_one_clear_error_and_resumable(tmp_path, corpus, monkeypatch):
    """The storage refuses writes (ENOSPC) at creation and later mid-run: one line each, nothing committed is
    lost, and the same command finishes the store once there is room again."""
    path, _ = corpus
    from icechunk.store import IcechunkStore

    real_set, calls = IcechunkStore.set, {"n": 0, "after": 0, "prefix": ""}

    async def failing_set(self, key, value):  # noqa: ANN001, ANN202
        calls["n"] += key.startswith(calls["prefix"])
        if calls["n"] > calls["after"] and key.startswith(calls["prefix"]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value)

    monkeypatch.setattr(IcechunkStore, "set", failing_set)
    cfg = load_config(window_records=16, attn_chunk_elems=1 << 14, commit_bytes=1)
    out = tmp_path / "full.zarr"
    with pytest.raises(StoreError, match=r"full\.zarr: cannot create store \(No space left on device\)"):
        extract(ExtractOptions(input=str(path), output=str(out), device="cpu"), config=cfg)
    calls.update(n=0, prefix="attn/c")
    with pytest.raises(StoreError, match=r"full\.zarr: disk full; 0 records are committed"):
        extract(ExtractOptions(input=str(path), output=str(out), device="cpu"), config=cfg)
    calls.update(n=0, after=40)
    with pytest.raises(StoreError, match=r"full\.zarr: disk full; \d+ records are committed") as info:
        extract(ExtractOptions(input=str(path), output=str(out), device="cpu"), config=cfg)
    assert "\n" not in str(info.value)
    kept = len(open_store(out))
    assert 0 < kept < 70 and not open_store(out).complete
    monkeypatch.setattr(IcechunkStore, "set", real_set)
    s = extract(ExtractOptions(input=str(path), output=str(out), device="cpu"), config=cfg)
    assert s.status == "complete" and s.records == 70 and s.resumed_from == kept


def test_missing_model_and_unwritable_output(tmp_path, corpus):
    path, _ = corpus
    with pytest.raises(AttnxError, match="model directory not found"):
        extract(ExtractOptions(input=str(path), output=str(tmp_path / "x.zarr"), model=str(tmp_path / "nope")))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create store|not an attnx store"):
        extract(ExtractOptions(input=str(path), output=str(blocker / "x.zarr"), device="cpu"))


def test_conllu_alignment_on_real_ewt(tmp_path):
    text = shared_file("ud_english_ewt/dev/en_ewt-ud-dev.conllu").read_text(encoding="utf-8")
    head = "\n\n".join(text.split("\n\n")[:25]) + "\n\n"
    (tmp_path / "d.conllu").write_text(head, encoding="utf-8")
    extract(ExtractOptions(input=str(tmp_path / "d.conllu"), output=str(tmp_path / "d.zarr"), device="cpu"))
    store = open_store(tmp_path / "d.zarr")
    assert len(store) == 25 and store.attrs["conllu"]
    for i in range(25):
        heads, rel = store.dependencies(i)
        wid = store.word_ids(i)
        assert wid[0] == -1 and wid[-1] == -1
        assert set(wid[1:-1].tolist()) == set(range(len(heads)))  # every word has a wordpiece
        assert np.all(np.diff(wid[1:-1]) >= 0)
        assert heads.min() >= -1 and heads.max() < len(heads)
        assert (heads == -1).sum() == 1 and store.deprels[rel[heads == -1][0]] == "root"
