"""``attnx compact`` / ``compact_store``: a finished store shrinks to one snapshot with the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers.paths import SAMPLE

from attnx.cli.main import main
from attnx.config import load_config
from attnx.engine.extract import ExtractOptions, extract
from attnx.errors import StoreError
from attnx.store import WriterLock, open_store
from attnx.store.compact import compact_store, footprint
from attnx.store.verify import verify_store

MODEL = "random-bert-tiny"
# a commit after every window of 8 records: 60 records -> 8 data commits
CONFIG = dict(attn_chunk_elems=1 << 12, record_chunk=16, token_chunk=64, window_records=8, commit_bytes=1)


def _extract(src: Path, out: Path, progress=None) -> None:  # noqa: ANN001
    opts = ExtractOptions(input=str(src), output=str(out), model=MODEL, device="cpu", backend="torch", dtype="q10")
    extract(opts, config=load_config(**CONFIG), progress=progress)


def _records(path: Path) -> dict[int, tuple[np.ndarray, list[str]]]:
    store = open_store(path)
    return {i: (store.attention(i).copy(), store.tokens(i)) for i in range(len(store))}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "in.txt"
    lines = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:60]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def _data_commits(path: Path) -> list[dict]:
    return [h for h in open_store(path).history() if h["records"] is not None]


def test_compact_keeps_the_data_and_one_snapshot(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "s.zarr"
    _extract(corpus, out)
    assert len(_data_commits(out)) >= 5
    before_records, before_snap = _records(out), open_store(out).snapshot_id
    before = footprint(out)

    report = compact_store(out)

    assert report.snapshot == before_snap and report.records == 60
    assert report.snapshots_expired >= 4 and report.deleted["snapshots_deleted"] >= 4
    after = footprint(out)
    assert report.before == before and report.after == after
    assert after.total_objects < before.total_objects
    assert after.objects["snapshots"] < before.objects["snapshots"]
    assert after.metadata_bytes < before.metadata_bytes
    store = open_store(out)
    assert store.snapshot_id == before_snap and store.complete
    got = _records(out)
    assert got.keys() == before_records.keys()
    for i, (maps, tokens) in before_records.items():
        assert got[i][1] == tokens
        assert got[i][0].dtype == maps.dtype and np.array_equal(got[i][0], maps)  # bit-identical
    commits = _data_commits(out)
    assert len(commits) == 1 and commits[0]["snapshot"] == before_snap
    verify_store(out)
    result = CliRunner().invoke(main, ["verify", str(out)])
    assert result.exit_code == 0, result.output
    # compacting again finds nothing more to expire
    assert compact_store(out).snapshots_expired == 0


def test_compact_cli_reports_before_and_after(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "s.zarr"
    _extract(corpus, out)
    result = CliRunner().invoke(main, ["compact", str(out)])
    assert result.exit_code == 0, result.output
    assert "snapshots expired; objects" in result.output and " -> " in result.output
    assert len(_data_commits(out)) == 1


def test_a_held_lock_refuses_compact_with_one_line(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "s.zarr"
    _extract(corpus, out)
    snapshots = footprint(out).objects["snapshots"]
    with WriterLock(open_store(out).location):
        with pytest.raises(StoreError) as info:
            compact_store(out)
        result = CliRunner().invoke(main, ["compact", str(out)])
    message = str(info.value)
    assert "being written by pid" in message and "\n" not in message
    assert result.exit_code != 0 and result.output.strip() == f"Error: {message}"
    assert footprint(out).objects["snapshots"] == snapshots  # nothing expired


def test_an_incomplete_store_is_refused(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "s.zarr"

    def stop(records: int, tokens: int, nbytes: int) -> None:
        if records >= 24:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _extract(corpus, out, progress=stop)
    assert not open_store(out).complete
    snapshots = footprint(out).objects["snapshots"]
    with pytest.raises(StoreError, match=r"s\.zarr: incomplete \(\d+ records committed\); finish it"):
        compact_store(out)
    assert footprint(out).objects["snapshots"] == snapshots


def test_extract_compact_option(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CONFIG.items():
        monkeypatch.setenv(f"ATTNX_{key.upper()}", str(value))
    out = tmp_path / "s.zarr"
    args = ["extract", str(corpus), "-o", str(out), "--model", MODEL, "--device", "cpu", "--backend", "torch", "-q"]
    result = CliRunner().invoke(main, [*args, "--compact"])
    assert result.exit_code == 0, result.output
    assert "compacted to snapshot" in result.output
    assert len(_data_commits(out)) == 1 and len(open_store(out)) == 60
    verify_store(out)
