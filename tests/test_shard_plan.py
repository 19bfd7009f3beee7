"""Every worker gets work: shard sizes planned from a file's record count (issue 22, item 5)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
from helpers.paths import SAMPLE

import attnx
from attnx.config import load_config
from attnx.engine.extract import ExtractOptions
from attnx.engine.sources import Source
from attnx.scaleout.shards import (
    DEFAULT_SHARD_RECORDS,
    MIN_SHARD_RECORDS,
    count_records,
    cut_shards,
    plan_shard_records,
)


def _shards(records: int, size: int) -> int:
    return math.ceil(records / size)


@pytest.mark.parametrize("workers", [2, 3, 4, 8, 16])
def test_small_inputs_give_every_worker_several_shards(workers: int) -> None:
    for records in (3_541, 12_544, 50_000, 100_000, 400_000):
        size = plan_shard_records(records, workers, 4096)
        assert _shards(records, size) >= min(4 * workers, records // MIN_SHARD_RECORDS), (records, workers, size)
        assert size <= DEFAULT_SHARD_RECORDS
        # whole windows when at least one window: each shard is batched in one process's windows
        assert size % 4096 == 0 or size < 4096


def test_the_issue_sizes() -> None:
    assert plan_shard_records(3_541, 2, 4096) == 443  # 8 shards, below one window: the shard is its window
    assert plan_shard_records(100_000, 2, 4096) == 12_288  # 3 windows: 9 shards
    assert plan_shard_records(10**6, 2, 4096) == DEFAULT_SHARD_RECORDS  # 62 shards with the default
    assert plan_shard_records(131_072, 2, 4096) == DEFAULT_SHARD_RECORDS  # exactly 4 default shards per worker


def test_unknown_size_one_worker_and_tiny_inputs() -> None:
    assert plan_shard_records(None, 2, 4096) == DEFAULT_SHARD_RECORDS  # stdin keeps the default
    assert plan_shard_records(3_541, 1, 4096) == DEFAULT_SHARD_RECORDS
    assert plan_shard_records(100, 2, 4096) == MIN_SHARD_RECORDS


CORPORA = {
    "a.txt": "one\n\ntwo words\nthree\nfour\n",
    "c.jsonl": '{"text": "x"}\n\n{"text": "y"}\n  \n{"text": "w"}\n\n',
    "d.conllu": (
        "# sent_id = 1\n1\tA\ta\tX\t_\t_\t0\troot\t_\t_\n\n\n"
        "1\tB\tb\tX\t_\t_\t0\troot\t_\t_\n\n"
        "1\tE\te\tX\t_\t_\t0\troot\t_\t_\n"
    ),
}


@pytest.mark.parametrize("name", sorted(CORPORA))
@pytest.mark.parametrize("gz", [False, True])
def test_count_records_counts_what_cut_shards_cuts(tmp_path: Path, name: str, gz: bool) -> None:
    path = tmp_path / (name + (".gz" if gz else ""))
    data = CORPORA[name].encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    expected = sum(s.records for s in cut_shards(Source(str(path)), 2))
    assert count_records(Source(str(path))) == expected == len(list(Source(str(path))))
    assert count_records(Source(str(path)), limit=1) == 2  # stops once past the limit
    assert count_records(Source("-", "text")) is None


# ----------------------------------------------------------------------------------------------------------
# the coordinator plans when --shard-records is not given, and resumes a store another plan started
# ----------------------------------------------------------------------------------------------------------
SMALL = {
    "window_records": 16,
    "attn_chunk_elems": 1 << 15,
    "record_chunk": 24,
    "token_chunk": 200,
    "cpu_threads": 1,
    "precision_check_records": 0,
}


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")
    from attnx.scaleout.dask_cluster import ClusterSpec, connect

    with connect(ClusterSpec(workers=2, threads_per_worker=1), announce=lambda line: None) as c:
        yield c


def _run(client, inp: Path, out: Path, progress=None):  # noqa: ANN001, ANN202
    from attnx.scaleout.coordinator import ScaleOptions, extract_on_cluster

    opts = ExtractOptions(input=str(inp), output=str(out), model="random-bert-tiny", backend="torch")
    return extract_on_cluster(
        opts, client, ScaleOptions(torch_threads=1), progress=progress, config=load_config(**SMALL)
    )


def test_coordinator_plans_shards_and_resumes_under_another_plan(client, tmp_path: Path, monkeypatch) -> None:
    import attnx.scaleout.coordinator as coordinator

    inp = tmp_path / "in.txt"
    inp.write_text("\n".join((SAMPLE / "sample.txt").read_text().splitlines()[:200]) + "\n")
    out = tmp_path / "d.zarr"
    summary = _run(client, inp, out)
    # 200 records on 2 workers: ceil(200 / 8) = 25 -> one whole window of 16 -> 13 shards (16 with the default)
    assert attnx.open_store(out).attrs["distributed"]["shard_records"] == 16
    assert summary.batches == 13 and summary.records == 200

    def stop(records: int, tokens: int, nbytes: int) -> None:
        if records >= 64:
            raise KeyboardInterrupt

    again = tmp_path / "r.zarr"
    with pytest.raises(KeyboardInterrupt):
        _run(client, inp, again, progress=stop)
    held = len(attnx.open_store(again))
    assert held % 16 == 0 and 0 < held < 200
    # resumed with a plan whose shards do not divide what the store holds (as another --workers would give)
    monkeypatch.setattr(coordinator, "plan_shard_records", lambda records, workers, window: held + 16)
    resumed = _run(client, inp, again)
    assert resumed.resumed_from == held and resumed.records == 200
    assert attnx.open_store(again).attrs["distributed"]["shard_records"] == 16  # gcd(held, held + 16)
    for i in (0, held - 1, held, 199):
        assert (attnx.open_store(again).attention(i) == attnx.open_store(out).attention(i)).all()
