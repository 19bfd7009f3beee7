"""A store that cannot lie: faults in any object, crafted stores, concurrent writers, changed inputs.

Every fault injected into a real store's objects (chunks, manifests, snapshots, refs, transaction logs;
deleted, truncated or with one byte flipped) must be reported by ``attnx verify``, by the API and by
``attnx analyze`` with a one-line error, or be provably harmless (every record reads back identical).

One file for everything the store promises (faults, crafted stores, writers, resume identity, the ecosystem
views), so its fixtures are built once; hence its length.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from helpers.paths import SAMPLE

import attnx
from attnx.cli.main import main
from attnx.config import load_config
from attnx.engine.extract import ExtractOptions, extract
from attnx.errors import InputError, StoreError
from attnx.store import StoreLocation, WriterLock, open_store
from attnx.store.validate import seal
from attnx.store.verify import verify_store

MODEL = "random-bert-tiny"  # 2 layers x 4 heads: fast, and faults do not depend on the weights
CONFIG = dict(attn_chunk_elems=1 << 13, record_chunk=16, token_chunk=64, window_records=16, commit_bytes=1)


def _extract(src: Path, out: Path | str, commit_bytes: int = 1, **kw: object):  # noqa: ANN202
    # torch unless a test says otherwise (no export needed); a byte flip anywhere in a snapshot is covered by
    # test_snapshot_byte_flips_are_never_silent, whichever backend wrote the data
    kw.setdefault("backend", "torch")
    opts = ExtractOptions(input=str(src), output=str(out), model=MODEL, device="cpu", **kw)
    return extract(opts, config=load_config(**{**CONFIG, "commit_bytes": commit_bytes}))


def _lines(n: int, start: int = 0) -> list[str]:
    return (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[start : start + n]


def _snapshot(store: attnx.store.AttentionStore) -> dict:
    """Everything the API gives per record: maps, and tokens with their segment/special/punct/word arrays."""
    return {
        i: (
            store.attention(i).copy(),
            (store.tokens(i), *(a.tolist() for a in (store.segments(i), store.special_mask(i),
                                                     store.punct_mask(i), store.word_ids(i)))),
        )
        for i in range(len(store))
    }


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 60 records (sentences and pairs) with many small chunks, written in one data commit so
    that every chunk object is live (a rewritten chunk's old object only serves older snapshots)."""
    d = tmp_path_factory.mktemp("real")
    src = d / "in.tsv"
    pairs = [f"{a}\t{b}" for a, b in zip(_lines(20), _lines(20, 100), strict=True)]
    src.write_text("\n".join(_lines(40, 30) + pairs) + "\n", encoding="utf-8")
    _extract(src, d / "s.zarr", commit_bytes=1 << 40)
    return d / "s.zarr"


# ---------------------------------------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------------------------------------
def _faults(store: Path) -> list[tuple[str, str]]:
    """(relative path, fault) pairs: the largest and smallest chunk, every manifest, the newest and an
    older snapshot, the branch ref, config and a transaction log; each deleted, truncated, byte-flipped."""
    files = {p.relative_to(store).as_posix(): p.stat().st_size for p in store.rglob("*") if p.is_file()}
    chunks = sorted((f for f in files if f.startswith("chunks/")), key=files.get)
    snaps = sorted((f for f in files if f.startswith("snapshots/")), key=lambda f: (store / f).stat().st_mtime)
    picks = [chunks[0], chunks[len(chunks) // 3], chunks[2 * len(chunks) // 3], chunks[-1]]
    picks += [snaps[-1], snaps[-2], "refs/branch.main/ref.json"]
    picks += sorted(f for f in files if f.startswith("manifests/"))[:4]
    picks += sorted(f for f in files if f.startswith("transactions/"))[:1]
    picks += [f for f in files if f == "config.yaml"]
    return [(f, fault) for f in picks for fault in ("delete", "truncate", "flip")]


def _inject(path: Path, fault: str) -> None:
    data = path.read_bytes()
    if fault == "delete":
        path.unlink()
    elif fault == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x20
        path.write_bytes(bytes(flipped))


@pytest.mark.slow
def test_no_fault_is_silent(real_store: Path, tmp_path: Path) -> None:
    reference = _snapshot(open_store(real_store))
    faults = _faults(real_store)
    assert len(faults) >= 24
    runner = CliRunner()
    outcomes = []
    for rel, fault in faults:
        copy = tmp_path / "f.zarr"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(real_store, copy)
        _inject(copy / rel, fault)
        try:
            verify_store(copy)
        except StoreError as exc:
            assert "\n" not in str(exc)
            if "cannot read the commit history" in str(exc):
                # an older snapshot is damaged: verify and history() say so; the newest snapshot reads unchanged
                with pytest.raises(StoreError, match="commit history"):
                    open_store(copy).history()
                again = _snapshot(open_store(copy))
                assert all(np.array_equal(again[i][0], m) and again[i][1] == t for i, (m, t) in reference.items())
                outcomes.append("reported")
                continue
            with pytest.raises(StoreError):  # the API reports it too, naming the store
                _snapshot(open_store(copy))
            result = runner.invoke(main, ["analyze", str(copy), "-o", str(tmp_path / "an")])
            assert result.exit_code == 1, (rel, fault, result.output)
            last = result.output.rstrip("\n").split("\n")[-1]  # after the progress bar (stderr) if it started
            assert last.startswith("Error: ") and "Traceback" not in result.output, result.output
            outcomes.append("reported")
            continue
        # verify passed: the fault must be harmless, every record identical
        again = _snapshot(open_store(copy))
        assert again.keys() == reference.keys(), (rel, fault)
        for i, (maps, toks) in reference.items():
            np.testing.assert_array_equal(again[i][0], maps, err_msg=f"{rel} {fault}")
            assert again[i][1] == toks
        outcomes.append("harmless")
    assert outcomes.count("reported") >= 24, outcomes


def test_snapshot_byte_flips_are_never_silent(real_store: Path, tmp_path: Path) -> None:
    """Flip one byte at ~120 evenly spaced places of the newest snapshot (compressed, no checksum of its own):
    each is either reported by verify (and by the API) or changes nothing. Before the vocabulary digest,
    15 of 640 such flips decoded to another valid vocabulary and silently changed ``tokens(i)``."""
    reference = _snapshot(open_store(real_store))
    copy = tmp_path / "f.zarr"
    shutil.copytree(real_store, copy)
    newest = max((copy / "snapshots").iterdir(), key=lambda p: p.stat().st_mtime)
    original = newest.read_bytes()
    reported = harmless = 0
    for pos in range(0, len(original), max(1, len(original) // 120)):
        flipped = bytearray(original)
        flipped[pos] ^= 0x20
        newest.write_bytes(bytes(flipped))
        try:
            verify_store(copy)
        except StoreError as exc:
            assert "\n" not in str(exc)
            with pytest.raises(StoreError):
                _snapshot(open_store(copy))
            reported += 1
            continue
        again = _snapshot(open_store(copy))
        for i, (maps, toks) in reference.items():
            np.testing.assert_array_equal(again[i][0], maps, err_msg=f"byte {pos}")
            assert again[i][1] == toks, f"flipping byte {pos} of the snapshot silently changed record {i}"
        harmless += 1
    assert reported + harmless >= 100 and reported > harmless


# ---------------------------------------------------------------------------------------------------------
# Crafted stores: whatever the metadata and offsets say, one-line errors and bounded memory
# ---------------------------------------------------------------------------------------------------------
def _craft(src: Path, dst: Path, edit) -> Path:  # noqa: ANN001
    import icechunk

    shutil.copytree(src, dst)
    repo = icechunk.Repository.open(StoreLocation.parse(dst).storage())
    session = repo.writable_session("main")
    edit(zarr.open_group(store=session.store, mode="r+"))
    session.commit("crafted")
    return dst


def _set_attr(key: str, value: object):  # noqa: ANN202
    def edit(g: zarr.Group) -> None:
        a = dict(g.attrs["attnx"])
        cur = a
        *path, last = key.split(".")
        for p in path:
            cur[p] = dict(cur[p])
            cur = cur[p]
        cur[last] = value
        g.attrs["attnx"] = seal(a)  # a crafter who re-seals: the checks behind the digest must hold on their own

    return edit


def _set_values(name: str, index: int, value: int):  # noqa: ANN202
    def edit(g: zarr.Group) -> None:
        with zarr.config.set({"array.write_empty_chunks": True}):
            a = zarr.open_array(store=g.store, path=name, mode="r+")
            a[index] = value

    return edit


def _resize(name: str, n: int):  # noqa: ANN202
    return lambda g: g[name].resize((n,))


def _retype(name: str, dtype: str):  # noqa: ANN202
    def edit(g: zarr.Group) -> None:
        data = np.asarray(g[name][:])
        del g[name]
        g.create_array(name, data=data.astype(dtype), chunks=(4096,))

    return edit


CRAFTED = {
    "length too long": (_set_values("rec/length", 3, 10**6), "rec/length"),
    "length zero": (_set_values("rec/length", 0, 0), "rec/length"),
    "attn_start off": (_set_values("rec/attn_start", 5, 7), "attn_start"),
    "attn_start negative": (_set_values("rec/attn_start", 1, -(10**9)), "attn_start"),
    "tok_start off": (_set_values("rec/tok_start", 2, 10**12), "tok_start"),
    "duplicate input id": (_set_values("rec/input_id", 1, 0), "input_id"),
    "huge input id": (_set_values("rec/input_id", 1, 10**15), "input_id"),
    "attn shape huge": (_resize("attn", 10**11), "attn"),
    "record shape huge": (_resize("rec/length", 10**11), "rec/length"),
    "token shape short": (_resize("tok/ids", 5), "tok/ids"),
    "dtype changed": (_retype("rec/length", "int64"), "rec/length"),
    "payload dtype changed": (_retype("attn", "float32"), "attn"),
    "commit records": (_set_attr("commit.records", 10**9), "the commit says"),
    "commit negative": (_set_attr("commit.attn", -5), "commit.attn"),
    "commit not a number": (_set_attr("commit.tokens", "many"), "commit.tokens"),
    "layers list": (_set_attr("layers", list(range(10**4))), "layers"),
    "heads unsorted": (_set_attr("heads", [3, 1]), "heads"),
    "model layers": (_set_attr("model.layers", 10**9), "model.layers"),
    "dtype attribute": (_set_attr("dtype", "float8"), "dtype"),
    "format": (_set_attr("format", "other"), "not an attnx store"),
    "index position": (_set_values("index/position", 0, 5), "index/position"),
    "missing array": (lambda g: g.__delitem__("tok/punct"), "tok/punct"),
    "token id outside vocab": (_set_values("tok/ids", 3, 10**8), "tok/ids"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_store_is_a_one_line_error_with_bounded_memory(real_store: Path, tmp_path: Path, case: str) -> None:
    edit, expected = CRAFTED[case]
    crafted = _craft(real_store, tmp_path / "c.zarr", edit)
    tracemalloc.start()
    try:
        with pytest.raises(StoreError, match=expected) as info:
            store = open_store(crafted)
            store.position  # noqa: B018 - reading the index checks it
            for _ in store.blocks():
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value)
    assert peak < 64 << 20, f"{case}: {peak / 1e6:.0f} MB allocated"
    result = CliRunner().invoke(main, ["verify", str(crafted)])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1


def test_verify_reports_what_it_checked(real_store: Path) -> None:
    result = CliRunner().invoke(main, ["verify", str(real_store)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "60 records" in result.output and "distribution" in result.output


# ---------------------------------------------------------------------------------------------------------
# Writers: the lock, concurrent starts, stale locks, readers during a write
# ---------------------------------------------------------------------------------------------------------
def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("\n".join(_lines(10)) + "\n", encoding="utf-8")
    with WriterLock(StoreLocation.parse(tmp_path / "s.zarr")):
        with pytest.raises(StoreError, match=rf"s\.zarr: being written by pid {os.getpid()} on .* since "):
            _extract(src, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()  # nothing was made by the refused run
    _extract(src, tmp_path / "s.zarr")  # the lock is free again
    assert len(open_store(tmp_path / "s.zarr")) == 10


def test_writer_refused_in_the_holders_first_microseconds_still_names_it(tmp_path: Path) -> None:
    """The holder writes its pid just after taking the lock; a writer refused in between waits for that file
    rather than saying "another process" (the race two writers started together can hit)."""
    import json
    import threading

    import filelock

    holder = WriterLock(StoreLocation.parse(tmp_path / "s.zarr"))
    with filelock.FileLock(str(holder.lock_path), timeout=0):  # taken, its info not written yet
        info = {"pid": 4242, "host": "h", "started": "2026-11-29T10:00:00+00:00"}
        late = threading.Timer(0.2, lambda: holder.info_path.write_text(json.dumps(info)))
        late.start()
        with pytest.raises(StoreError, match=r"s\.zarr: being written by pid 4242 on h since 2026-11-29 10:00:00"):
            WriterLock(StoreLocation.parse(tmp_path / "s.zarr")).acquire()
        late.join()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from attnx.cli.main import main; main()", *args]


def test_two_writers_started_together_leave_one_valid_store(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(_lines(30)) + "\n", encoding="utf-8")
    b.write_text("\n".join(_lines(25, 100)) + "\n", encoding="utf-8")
    out = tmp_path / "s.zarr"
    env = {**os.environ, "ATTNX_COMMIT_BYTES": "1"}
    procs = [
        subprocess.Popen(_cli("extract", str(p), "-o", str(out), "-q", "-m", MODEL), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in (a, b)
    ]
    results = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    # the loser is refused in one line: while the winner writes (the lock), or, when its start-up took longer
    # than the winner's whole run (a loaded machine), by the finished store made from the other input
    refused = ("being written by pid", "exists with a different input")
    assert any(m in loser[2] for m in refused) and loser[2].strip().count("\n") == 0, loser[2]
    winner = a if results[0][0] == 0 else b
    verify_store(out)
    store = open_store(out)
    assert store.complete and len(store) == len(winner.read_text().splitlines())


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from attnx.store import WriterLock, StoreLocation; "
         f"lk = WriterLock(StoreLocation.parse({str(out)!r})).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(StoreError, match=f"pid {holder.pid}"):
        WriterLock(StoreLocation.parse(out)).acquire()
    holder.kill()
    holder.wait()
    lock = WriterLock(StoreLocation.parse(out)).acquire()  # the kernel dropped the dead holder's lock
    lock.release()


def test_readers_see_the_last_commit_during_a_write(tmp_path: Path) -> None:
    from helpers.stores import make_writer_batches

    writer, batches = make_writer_batches(tmp_path / "s.zarr")
    writer.append(batches[0])  # committed (commit_bytes=1)
    reader = open_store(tmp_path / "s.zarr")
    assert len(reader) == len(batches[0].input_id) and not reader.complete
    writer.config = type(writer.config)(commit_bytes=1 << 40, commit_seconds=1e9)
    writer.append(batches[1])  # in the session only
    assert len(open_store(tmp_path / "s.zarr")) == len(batches[0].input_id)  # never half a batch
    writer.finish()
    done = open_store(tmp_path / "s.zarr")
    assert done.complete and len(done) == sum(len(b.input_id) for b in batches[:2])
    assert len(reader) == len(batches[0].input_id)  # an open reader keeps its snapshot
    history = done.history()
    assert [h["records"] for h in history[:2]] == [len(done), len(batches[0].input_id)]


# ---------------------------------------------------------------------------------------------------------
# Resume checks the input's identity
# ---------------------------------------------------------------------------------------------------------
def _failing_input(tmp_path: Path, good: list[str]) -> Path:
    src = tmp_path / "in.txt"
    src.write_bytes(("\n".join(good) + "\n").encode() + b"\xff bad line\n" + b"after\n")
    return src


def test_changed_input_is_refused_and_fixed_input_resumes(tmp_path: Path) -> None:
    good = _lines(40)
    src = _failing_input(tmp_path, good)
    out = tmp_path / "s.zarr"
    with pytest.raises(InputError, match=r"in\.txt:41: invalid UTF-8"):
        _extract(src, out)
    kept = len(open_store(out))
    assert kept >= 32 and not open_store(out).complete  # the windows before the bad line are committed
    changed = list(good)
    changed[3] = "a different sentence"
    src.write_bytes(("\n".join(changed) + "\n").encode() + b"after\n")
    with pytest.raises(InputError, match=r"in\.txt:4: differs from the input this store was started with \(record 3 "
                       r"is the first whose tokens changed\)"):
        _extract(src, out)
    assert len(open_store(out)) == kept  # the refused run wrote nothing
    cased = list(good)
    cased[5] = good[5].upper()  # the uncased tokenizer does not see it: the error names the window's records
    src.write_bytes(("\n".join(cased) + "\n").encode() + b"after\n")
    with pytest.raises(InputError, match=r"in\.txt:\d+: differs from the input .* \(records \d+\.\.\d+ changed\)"):
        _extract(src, out)
    src.write_text("\n".join(good) + "\nfixed line\nafter\n", encoding="utf-8")
    summary = _extract(src, out)
    assert summary.resumed_from == kept and summary.records == 42
    ref = tmp_path / "ref.zarr"
    _extract(src, ref)
    a, b = open_store(out), open_store(ref)
    for i in range(42):
        np.testing.assert_array_equal(a.attention(i), b.attention(i))
        assert a.tokens(i) == b.tokens(i)


def test_different_stdin_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    first = "\n".join(_lines(40)) + "\n\udcff"  # ends in bytes that are not UTF-8: the run stops there
    runner = CliRunner()
    args = ["extract", "-", "-o", str(out), "-q", "-m", MODEL]
    env = {f"ATTNX_{k.upper()}": str(v) for k, v in CONFIG.items()}
    r = runner.invoke(main, args, input=first.encode("utf-8", "surrogateescape"), env=env)
    assert r.exit_code == 1 and "-:41: invalid UTF-8" in r.output
    r = runner.invoke(main, args, input="\n".join(_lines(40, 50)) + "\n", env=env)
    assert r.exit_code == 1 and "differs from the input this store was started with" in r.output, r.output
    r = runner.invoke(main, args, input="\n".join(_lines(40)) + "\nlast\n", env=env)
    assert r.exit_code == 0, r.output
    assert len(open_store(out)) == 41


def test_overwrite_replaces_a_store_deliberately(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("\n".join(_lines(12)) + "\n", encoding="utf-8")
    _extract(src, tmp_path / "s.zarr", dtype="uint8")
    with pytest.raises(StoreError, match="different dtype"):
        _extract(src, tmp_path / "s.zarr")
    _extract(src, tmp_path / "s.zarr", overwrite=True)
    assert open_store(tmp_path / "s.zarr").dtype == "float16"


def test_one_line_errors_for_bad_environment_and_lengths(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("one\n", encoding="utf-8")
    runner = CliRunner()
    r = runner.invoke(main, ["extract", str(src), "-o", str(tmp_path / "s.zarr"), "-m", MODEL],
                      env={"ATTNX_WINDOW_RECORDS": "many"})
    assert r.exit_code == 1 and "ATTNX_WINDOW_RECORDS='many': expected int" in r.output
    r = runner.invoke(main, ["extract", str(src), "-o", str(tmp_path / "s.zarr"), "-m", MODEL, "--max-length", "1"])
    assert r.exit_code != 0 and "room for the special tokens" in r.output
    r = runner.invoke(main, ["extract", str(src), "-o", str(tmp_path / "s.zarr"), "-m", MODEL, "--max-length", "600"])
    assert r.exit_code == 1 and "512 positions" in r.output, r.output
    gz = tmp_path / "bad.txt.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(64))
    r = runner.invoke(main, ["extract", str(gz), "-o", str(tmp_path / "g.zarr"), "-m", MODEL, "-q"])
    assert r.exit_code == 1 and "bad.txt.gz:1: corrupted compressed input" in r.output and r.output.count("\n") == 1
    js = tmp_path / "s.jsonl"
    js.write_text('{"text": "fine"}\n{"text": "bad \\ud800 here"}\n', encoding="utf-8")
    r = runner.invoke(main, ["extract", str(js), "-o", str(tmp_path / "j.zarr"), "-m", MODEL, "-q"])
    assert r.exit_code == 1 and "s.jsonl:2: invalid text: lone surrogate" in r.output


# ---------------------------------------------------------------------------------------------------------
# The ecosystem: xarray, and a record rebuilt with icechunk + zarr alone
# ---------------------------------------------------------------------------------------------------------
def test_open_dataset(real_store: Path) -> None:
    ds = attnx.open_dataset(real_store)
    store = open_store(real_store)
    assert ds["attn"].dims == ("element",) and ds["length"].dims == ("record",) and ds["token_ids"].dims == ("token",)
    assert ds.sizes["record"] == len(store) and ds.attrs["attnx"]["commit"]["records"] == len(store)
    assert ds["input_id"].values.tolist() == list(range(len(store)))  # input order, as attention(i) numbers them
    np.testing.assert_array_equal(ds["length"].values, store.lengths)
    np.testing.assert_array_equal(ds["line"].values, store.lines)
    l = int(ds["length"][7])
    start = int(ds["attn_start"][7])
    flat = ds["attn"][start : start + store.n_layers * store.n_heads * l * l].values
    np.testing.assert_array_equal(flat.astype(np.float32).reshape(store.n_layers, store.n_heads, l, l),
                                  store.attention(7))


def test_readme_recipe_rebuilds_a_record_without_attnx(real_store: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- recipe: without attnx -->")
    code = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"corpus.zarr"', repr(str(real_store))).replace("i = 17", "i = 7")
    out = subprocess.run([sys.executable, "-c", code + "\nimport numpy; numpy.save('maps.npy', maps)"],
                         cwd=real_store.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "attnx" not in out.stderr
    maps = np.load(real_store.parent / "maps.npy")
    np.testing.assert_array_equal(maps, open_store(real_store).attention(7))


# ---------------------------------------------------------------------------------------------------------
# Object stores: a local S3-compatible server (moto) on 127.0.0.1
# ---------------------------------------------------------------------------------------------------------
def test_s3_store_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        for k, v in dict(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                         AWS_ENDPOINT_URL=url).items():
            monkeypatch.setenv(k, v)
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="attn")
        src = tmp_path / "a.txt"
        src.write_text("\n".join(_lines(20)) + "\n", encoding="utf-8")
        summary = _extract(src, "s3://attn/corpora/a")
        assert summary.records == 20
        remote = open_store("s3://attn/corpora/a")
        local = tmp_path / "l.zarr"
        _extract(src, local)
        for i in range(20):
            np.testing.assert_array_equal(remote.attention(i), open_store(local).attention(i))
        assert verify_store("s3://attn/corpora/a").records == 20
        assert len(remote.history()) >= 3
    finally:
        server.stop()


def _write_format_1(new_store: Path, old: Path) -> None:
    """The layout attnx 0.1 wrote (plain Zarr, attributes with format attnx-store/1), from a new store's data."""
    st = open_store(new_store)
    g = zarr.open_group(str(old), mode="w", zarr_format=3)
    for name, array in st._arrays.items():
        g.create_array(name, data=np.asarray(array[:]), chunks=(997,))
    g["tok"].attrs["vocab"] = st.vocab
    g.attrs["attnx"] = {**st.attrs, "format": "attnx-store/1"}


def test_format_1_store_is_refused_then_converted(real_store: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.zarr"
    _write_format_1(real_store, old)
    with pytest.raises(StoreError, match="format-1 store .*attnx convert"):
        open_store(old)
    result = CliRunner().invoke(main, ["convert", str(old), str(tmp_path / "new.zarr")])
    assert result.exit_code == 0 and "converted 60 records" in result.output, result.output
    verify_store(tmp_path / "new.zarr")
    a, b = open_store(real_store), open_store(tmp_path / "new.zarr")
    assert len(b) == 60 and b.attrs["converted_from"]["format"] == "attnx-store/1"
    for i in range(60):
        np.testing.assert_array_equal(a.attention(i), b.attention(i))
        assert a.tokens(i) == b.tokens(i)


def test_writer_commit_cost_does_not_grow_with_the_store(tmp_path: Path) -> None:
    """A commit writes the new records' chunks and rewrites at most the last chunk of each array: chunk
    objects and chunk bytes written per commit stay flat as the store grows (the old format rewrote every
    partly filled 65,536-record chunk at each commit)."""
    from helpers.stores import make_writer_batches

    writer, batches = make_writer_batches(tmp_path / "s.zarr", n_batches=40)
    chunks = tmp_path / "s.zarr" / "chunks"

    def objects() -> dict[str, int]:
        return {f.name: f.stat().st_size for f in chunks.iterdir()} if chunks.is_dir() else {}

    counts, nbytes = [], []
    for b in batches:
        before = objects()
        writer.append(b)  # one commit each
        after = objects()
        new = set(after) - set(before)
        counts.append(len(new))
        nbytes.append(sum(after[f] for f in new))
    writer.finish()
    assert np.median(counts[-10:]) <= np.median(counts[2:12]) + 1, counts
    assert np.median(nbytes[-10:]) < 1.3 * np.median(nbytes[2:12]), nbytes


def test_commands_on_a_corrupt_store_print_one_line_and_no_asyncio_noise(real_store: Path, tmp_path: Path) -> None:
    """A failed read leaves zarr's other read tasks pending; the command still prints exactly one line."""
    copy = tmp_path / "c.zarr"
    shutil.copytree(real_store, copy)
    chunks = sorted((copy / "chunks").iterdir(), key=lambda f: f.stat().st_size)
    _inject(chunks[-1], "flip")
    for args in (["verify", str(copy)], ["show", str(copy), "0", "-o", str(tmp_path / "m.png")]):
        done = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=300)
        if args[0] == "show" and done.returncode == 0:
            continue  # record 0 may not touch the flipped chunk
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
        assert "Task was destroyed" not in done.stderr + done.stdout


@pytest.mark.parametrize("dtype", ["q10", "q16"])
def test_quantised_store_round_trip_verify_and_analyse(tmp_path: Path, dtype: str) -> None:
    """qN stores: uint16 codes, the dtype's codec, the bound stated by info, verified, analysed like floats."""
    src = tmp_path / "a.txt"
    src.write_text("\n".join(_lines(24)) + "\n", encoding="utf-8")
    _extract(src, tmp_path / "q.zarr", dtype=dtype)
    _extract(src, tmp_path / "f.zarr", dtype="float32")
    q, f = open_store(tmp_path / "q.zarr"), open_store(tmp_path / "f.zarr")
    bound = attnx.store.STORED_DTYPES[dtype].max_abs_error
    assert q._attn.dtype == np.uint16 and q.info()["storage_max_abs_error"] == bound
    assert max(float(np.abs(q.attention(i) - f.attention(i)).max()) for i in range(24)) <= bound
    assert verify_store(tmp_path / "q.zarr").max_row_sum_error > 0
    from attnx.analysis import AnalyzeParams, analyze_store

    a = analyze_store(q, AnalyzeParams(only=("features",)))
    b = analyze_store(f, AnalyzeParams(only=("features",)))
    np.testing.assert_allclose(a.feature_sums[..., :3], b.feature_sums[..., :3], rtol=2e-3, atol=bound * 40)
