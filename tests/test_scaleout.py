"""Distributed extraction and analysis (issue 9) on a local Dask cluster of 2 worker processes.

A ``--workers 2`` store must equal a single-process store of the same input record for record (tokens,
offsets, maps), survive a worker killed mid-shard, and resume after the whole job is killed; analyze with
workers must give the tables of one process. Small chunks make every shard have interior chunks (written by
workers) and edges (written by the coordinator).
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import SAMPLE

import attnx
from attnx.config import load_config
from attnx.engine.extract import ExtractOptions, extract
from attnx.engine.sources import Source
from attnx.scaleout.shards import cut_shards

distributed = pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")
pytestmark = pytest.mark.slow  # local Dask clusters: 4-75 s a test

SMALL = {"window_records": 16, "attn_chunk_elems": 1 << 15, "record_chunk": 24, "token_chunk": 200,
         "cpu_threads": 1, "precision_check_records": 0}
ENV_SMALL = {f"ATTNX_{k.upper()}": str(v) for k, v in SMALL.items()}


# --------------------------------------------------------------------------------------------------------
# cutting: shards hold whole records and end where a single process's windows end (same content digest)
# --------------------------------------------------------------------------------------------------------
CORPORA = {
    "a.txt": "one\n\ntwo words\nthree\n\ufefffour\nfive\nsix\n",
    "b.tsv": "a\tb\nc\n\nd\te\nf\tg\nh\n",
    "c.jsonl": '{"text": "x"}\n\n{"text": "y", "text_b": "z"}\n  \n{"text": "w"}\n{"text": "v"}\n\n\n',
    "d.conllu": (
        "# sent_id = 1\n1\tA\ta\tX\t_\t_\t0\troot\t_\t_\n\n\n"
        "# c\n1\tB\tb\tX\t_\t_\t2\tnsubj\t_\t_\n2\tC\tc\tX\t_\t_\t0\troot\t_\t_\n\n"
        "1\tD\td\tX\t_\t_\t0\troot\t_\t_\n\n"
        "1\tE\te\tX\t_\t_\t0\troot\t_\t_\n"
    ),
}


@pytest.mark.parametrize("name", sorted(CORPORA))
@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("gz", [False, True])
def test_shards_are_whole_records_with_single_process_digests(tmp_path: Path, name: str, size: int, gz: bool):
    path = tmp_path / (name + (".gz" if gz else ""))
    data = CORPORA[name].encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    whole = list(Source(str(path)))
    # the digest a single process records at the end of each window of `size` records
    src = Source(str(path))
    digests = []
    for k, _ in enumerate(src, 1):
        if k % size == 0:
            digests.append(src.content_digest())
    shards = list(cut_shards(Source(str(path)), size))
    assert b"".join(s.data for s in shards) == data
    assert sum(s.records for s in shards) == len(whole)
    assert [s.digest for s in shards if s.records == size] == digests[: len([s for s in shards if s.records == size])]
    parsed = []
    for s in shards:
        part = list(Source.from_bytes(str(path), s.data, Source(str(path)).format, s.first_line, s.first_id))
        assert len(part) == s.records
        parsed += part
    assert parsed == whole  # ids, line numbers, texts and CoNLL-U words of the whole input


def test_shard_error_names_the_whole_files_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\nnot json\n')
    shards = list(cut_shards(Source(str(path)), 2))
    with pytest.raises(attnx.errors.InputError, match=r"bad.jsonl:4: invalid JSON"):
        list(Source.from_bytes(str(path), shards[1].data, "jsonl", shards[1].first_line, shards[1].first_id))


# --------------------------------------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    from attnx.scaleout.dask_cluster import ClusterSpec, connect

    with connect(ClusterSpec(workers=2, threads_per_worker=1), announce=lambda line: None) as c:
        yield c


def _single(inp: Path, out: Path) -> attnx.store.AttentionStore:
    # torch: what the workers run under the default --backend auto (one backend per store; the single-process
    # default would pick onnx here, float16 values one ulp away from torch's)
    extract(ExtractOptions(input=str(inp), output=str(out), backend="torch"), config=load_config(**SMALL))
    return attnx.open_store(out)


def _distributed(client, inp: Path, out: Path, shard_records: int = 32, **opts):
    from attnx.scaleout.coordinator import ScaleOptions, extract_on_cluster

    return extract_on_cluster(ExtractOptions(input=str(inp), output=str(out), **opts), client,
                              ScaleOptions(shard_records=shard_records, torch_threads=1), config=load_config(**SMALL))


def assert_same_store(a, b, bound: float) -> None:
    assert len(a) == len(b) and a.complete and b.complete
    for name in ("rec/input_id", "rec/attn_start", "rec/tok_start", "rec/length", "rec/line", "tok/ids", "tok/word"):
        assert np.array_equal(np.asarray(a.group[name][:]), np.asarray(b.group[name][:])), name
    assert a.commit.attn == b.commit.attn
    worst = 0.0
    for i in range(len(a)):
        assert a.tokens(i) == b.tokens(i)
        worst = max(worst, float(np.abs(a.attention(i) - b.attention(i)).max()))
    assert worst <= bound, worst


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    lines = (SAMPLE / "sample.txt").read_text().splitlines()[:150]
    path = tmp_path_factory.mktemp("corpus") / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def single_store(corpus, tmp_path_factory):
    return _single(corpus, tmp_path_factory.mktemp("single") / "s.zarr")


def test_workers_store_equals_single_process_store(client, corpus, single_store, tmp_path: Path):
    summary = _distributed(client, corpus, tmp_path / "d.zarr")
    assert summary.status == "complete" and summary.records == 150
    assert summary.backend == attnx.open_store(tmp_path / "d.zarr").attrs["options"]["backend"] == "torch"
    b = attnx.open_store(tmp_path / "d.zarr")
    assert_same_store(single_store, b, bound=2.5e-4)  # float16's stated bound (batches pad differently)
    assert b.attrs["distributed"]["shard_records"] == 32
    attnx.verify(tmp_path / "d.zarr")
    ds = attnx.open_dataset(tmp_path / "d.zarr")
    assert ds.sizes["record"] == 150 and ds.sizes["element"] == b.commit.attn
    # a rerun is a no-op on the complete store
    assert _distributed(client, corpus, tmp_path / "d.zarr").status == "already complete"


def test_conllu_pairs_and_quantised_dtype(client, tmp_path: Path):
    # a synthetic CoNLL-U corpus with many relations (the real one is covered by test_analysis_real)
    words = ["the", "cat", "sat", "on", "a", "mat", "today", "quickly"]
    rels = ["det", "nsubj", "root", "case", "det", "obl", "obl:tmod", "advmod"]
    rng = np.random.default_rng(0)
    out = []
    for k in range(70):
        n = int(rng.integers(2, 8))
        out.append(f"# sent_id = {k}")
        for j in range(n):
            head = 0 if j == 0 else int(rng.integers(1, j + 1))
            out.append(f"{j + 1}\t{words[(j + k) % 8]}\t_\tX\t_\t_\t{head}\t{rels[(j * k) % 8] if j else 'root'}\t_\t_")
        out.append("")
    inp = tmp_path / "c.conllu"
    inp.write_text("\n".join(out) + "\n")
    extract(ExtractOptions(input=str(inp), output=str(tmp_path / "s.zarr"), dtype="q10"), config=load_config(**SMALL))
    _distributed(client, inp, tmp_path / "d.zarr", shard_records=16, dtype="q10")
    a, b = attnx.open_store(tmp_path / "s.zarr"), attnx.open_store(tmp_path / "d.zarr")
    assert_same_store(a, b, bound=2 * 4.9e-4)
    for i in range(len(a)):
        ha, da = a.dependencies(i)
        hb, db = b.dependencies(i)
        assert np.array_equal(ha, hb)
        assert [a.deprels[x] for x in da] == [b.deprels[x] for x in db]


def test_worker_killed_mid_shard_still_gives_the_same_store(client, corpus, single_store, tmp_path: Path):
    """SIGKILL the worker process running a shard; Dask re-runs the shard on a worker with the same fork."""
    pids = client.run(os.getpid)
    killed = []

    def killer() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for addr, keys in client.processing().items():
                if any("run_shard" in str(k) for k in keys):
                    time.sleep(0.3)  # well inside the shard
                    os.kill(pids[addr], signal.SIGKILL)
                    killed.append(addr)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    summary = _distributed(client, corpus, tmp_path / "d.zarr")
    thread.join()
    assert killed, "no shard was seen running: nothing was killed"
    assert summary.records == 150
    assert_same_store(single_store, attnx.open_store(tmp_path / "d.zarr"), bound=2.5e-4)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def test_killed_job_resumes_without_redoing_merged_shards(corpus, single_store, tmp_path: Path):
    out = tmp_path / "d.zarr"
    # torch, as the single-process store it is compared with (--workers N resolves auto as one process would)
    cmd = [sys.executable, "-m", "attnx.cli.main", "extract", str(corpus), "-o", str(out), "--workers", "2",
           "--threads-per-worker", "1", "--shard-records", "32", "--backend", "torch", "-q"]
    env = {**os.environ, **ENV_SMALL, "ATTNX_COMMIT_BYTES": "1"}  # a commit per merged shard
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if 0 < len(attnx.open_store(out)) < 150:
                    break
            except attnx.errors.StoreError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the run never committed a shard")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    held = len(attnx.open_store(out))
    assert held % 32 == 0 and 0 < held < 150  # whole shards only
    done = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import json

    summary = json.loads(done.stdout)
    assert summary["resumed_from"] == held and summary["records_this_run"] == 150 - held
    assert_same_store(single_store, attnx.open_store(out), bound=2.5e-4)


def _stop_after(n: int):
    """A progress callback that interrupts a run (as ^C does) once ``n`` records are done."""

    def progress(records: int, tokens: int, nbytes: int) -> None:
        if records >= n:
            raise KeyboardInterrupt

    return progress


def _interrupted_distributed(client, inp: Path, out: Path, after: int) -> int:
    from attnx.scaleout.coordinator import ScaleOptions, extract_on_cluster

    with pytest.raises(KeyboardInterrupt):
        extract_on_cluster(ExtractOptions(input=str(inp), output=str(out)), client,
                           ScaleOptions(shard_records=32, torch_threads=1), progress=_stop_after(after),
                           config=load_config(**SMALL))
    return len(attnx.open_store(out))


def test_one_process_finishes_what_workers_began_and_workers_refuse_a_torn_shard(
    client, corpus, single_store, tmp_path: Path
):
    """A store is a store: shards end on window boundaries, so one process can resume a distributed store.
    A single-process store stopped inside a shard is refused by workers in one line, and finished by one."""
    out = tmp_path / "d.zarr"
    held = _interrupted_distributed(client, corpus, out, after=1)
    assert held % 32 == 0 and 0 < held < 150
    summary = extract(ExtractOptions(input=str(corpus), output=str(out)), config=load_config(**SMALL))
    assert summary.resumed_from == held
    assert_same_store(single_store, attnx.open_store(out), bound=2.5e-4)

    torn = tmp_path / "t.zarr"
    with pytest.raises(KeyboardInterrupt):
        extract(ExtractOptions(input=str(corpus), output=str(torn), backend="torch"),  # the workers' backend
                config=load_config(**SMALL, commit_bytes=1), progress=_stop_after(40))
    held = len(attnx.open_store(torn))
    assert held % 32
    with pytest.raises(attnx.errors.StoreError, match="not a whole number of 32-record shards"):
        _distributed(client, corpus, torn)
    extract(ExtractOptions(input=str(corpus), output=str(torn)), config=load_config(**SMALL))
    assert_same_store(single_store, attnx.open_store(torn), bound=0.0)


def test_resume_refuses_a_changed_input(client, corpus, tmp_path: Path):
    out = tmp_path / "d.zarr"
    _interrupted_distributed(client, corpus, out, after=1)
    changed = corpus.read_text().splitlines(keepends=True)
    changed[3] = "a different sentence\n"
    other = tmp_path / "other.txt"
    other.write_text("".join(changed))
    with pytest.raises(attnx.errors.InputError, match="differs from the input this store was started with"):
        _distributed(client, other, out)
    _distributed(client, corpus, out)  # the original input finishes it
    with pytest.raises(attnx.errors.StoreError, match="different input"):
        _distributed(client, other, out)


def test_analyze_with_workers_equals_analyze_without(client, single_store, tmp_path: Path):
    from attnx.analysis import AnalyzeParams, analyze_store, write_results
    from attnx.analysis.driver import open_labels, plan_analysis
    from attnx.scaleout.analyze import analyze_on_cluster

    params = AnalyzeParams(only=("features", "patterns", "similarity"), metrics=("cosine", "js"), js_records=40,
                           per_record=True, max_bytes=1 << 20)
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    one = analyze_store(single_store, params, labels_path=tmp_path / "one" / "pattern_labels.npy")
    plan = plan_analysis(single_store, params)  # what analyze_store does before its pass, as a worker run needs
    open_labels(tmp_path / "many" / "pattern_labels.npy", 150, single_store.n_layers, single_store.n_heads, True)
    many = analyze_on_cluster(single_store, plan, client, tmp_path / "many" / "pattern_labels.npy",
                              task_bytes=1 << 20)
    assert many.records == one.records == 150
    np.testing.assert_allclose(many.feature_sums, one.feature_sums, rtol=1e-10)
    assert np.array_equal(many.pattern_counts, one.pattern_counts)
    for m in ("cosine", "js"):
        np.testing.assert_allclose(many.sim_sum[m], one.sim_sum[m], rtol=1e-10)
        assert many.sim_count[m] == one.sim_count[m]
    for f in ("pattern_labels.npy", "pattern_probs.npy"):
        assert np.array_equal(np.load(tmp_path / "one" / f), np.load(tmp_path / "many" / f), equal_nan=True)
    a = write_results(one, tmp_path / "one", single_store, params)
    b = write_results(many, tmp_path / "many", single_store, params)
    assert [p.name for p in a] == [p.name for p in b]
    assert (tmp_path / "one" / "patterns.csv").read_text() == (tmp_path / "many" / "patterns.csv").read_text()


def test_analyze_store_reaches_the_cluster(client, single_store, tmp_path: Path):
    """The library's analyze_store runs on a cluster with the CLI's --scheduler/--workers (no CLI-only path):
    the partial equals one process's, and the rules run before any task (one error for both)."""
    from attnx.analysis import AnalyzeParams, analyze_store

    params = AnalyzeParams(only=("features", "patterns", "similarity"), metrics=("cosine",), max_bytes=1 << 20)
    one = analyze_store(single_store, params)
    lines = []
    many = analyze_store(single_store, params, scheduler=client.scheduler.address, announce=lines.append)
    assert many.records == one.records == 150 and lines
    np.testing.assert_allclose(many.feature_sums, one.feature_sums, rtol=1e-10)
    np.testing.assert_allclose(many.sim_sum["cosine"], one.sim_sum["cosine"], rtol=1e-10)
    with pytest.raises(attnx.errors.AttnxError, match="relations need a CoNLL-U store"):
        analyze_store(single_store, AnalyzeParams(only=("relations",)), scheduler=client.scheduler.address)


def test_single_process_path_never_imports_distributed(tmp_path: Path):
    code = (
        "import sys, attnx, attnx.cli.main\n"
        f"attnx.extract({str(SAMPLE / 'sample.txt')!r}, {str(tmp_path / 's.zarr')!r})\n"
        "from attnx.analysis import analyze_store\n"
        f"analyze_store({str(tmp_path / 's.zarr')!r})\n"
        "assert 'distributed' not in sys.modules, 'distributed was imported'\n"
    )
    env = {**os.environ, "ATTNX_PRECISION_CHECK_RECORDS": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_stats_only_store_with_workers(client, corpus, tmp_path: Path):
    extract(ExtractOptions(input=str(corpus), output=str(tmp_path / "s.zarr"), stats_only=True),
            config=load_config(**SMALL))
    _distributed(client, corpus, tmp_path / "d.zarr", stats_only=True)
    a, b = attnx.open_store(tmp_path / "s.zarr"), attnx.open_store(tmp_path / "d.zarr")
    assert b.payload == "features" and len(a) == len(b)
    for i in range(len(a)):
        np.testing.assert_allclose(a.record_features(i), b.record_features(i), rtol=1e-4, atol=1e-5)


def test_gpu_workers_take_their_own_gpu(monkeypatch: pytest.MonkeyPatch):
    """--workers gpus without dask-cuda: worker k (named k by the local cluster) takes GPU k."""
    import torch

    import attnx.scaleout.worker as worker

    class FakeWorker:
        name = 3

    current = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(distributed, "get_worker", lambda: FakeWorker())
    assert worker._worker_device("cuda") == torch.device("cuda", 1)
    assert current == [torch.device("cuda", 1)]  # and made current: nothing of this worker runs on GPU 0
    assert worker._worker_device("cpu") == torch.device("cpu")
    assert current == [torch.device("cuda", 1)]


def test_default_backend_on_workers_is_the_recorded_torch(client, corpus, tmp_path: Path):
    """--backend auto is not resolved per worker: every worker runs torch and the store says so."""
    summary = _distributed(client, corpus, tmp_path / "a.zarr")
    assert summary.status == "complete"
    assert attnx.open_store(tmp_path / "a.zarr").attrs["options"]["backend"] == "torch"


def test_onnx_backend_on_workers_equals_onnx_in_one_process(client, corpus, tmp_path: Path):
    """--backend onnx on workers: each worker exports (or reuses) the ONNX model and runs onnxruntime; the store
    records onnx and equals a single-process onnx store within float16's bound."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
    extract(ExtractOptions(input=str(corpus), output=str(tmp_path / "s.zarr"), backend="onnx"),
            config=load_config(**SMALL))
    summary = _distributed(client, corpus, tmp_path / "d.zarr", backend="onnx")
    assert summary.status == "complete" and summary.backend == "onnx"
    a, b = attnx.open_store(tmp_path / "s.zarr"), attnx.open_store(tmp_path / "d.zarr")
    assert a.attrs["options"]["backend"] == b.attrs["options"]["backend"] == "onnx"
    assert_same_store(a, b, bound=2.5e-4)

    def backends_in_worker() -> list[str]:
        import attnx.scaleout.worker as worker

        return [type(engine[4]).__name__ for engine in worker._ENGINES.values()]

    ran = [name for names in client.run(backends_in_worker).values() for name in names]
    assert "OnnxBackend" in ran, ran  # the workers really ran onnxruntime, not torch under an onnx label


def test_auto_resolved_once_for_a_local_cpu_cluster(client, corpus, tmp_path: Path):
    """A local cluster of CPU workers (``--workers N``: ScaleOptions.resolve_auto) resolves ``auto`` on the
    coordinator as one process would, and every worker runs that backend on its share of the cores."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
    from attnx.scaleout.coordinator import ScaleOptions, extract_on_cluster

    extract(ExtractOptions(input=str(corpus), output=str(tmp_path / "s.zarr")), config=load_config(**SMALL))
    single = attnx.open_store(tmp_path / "s.zarr")
    summary = extract_on_cluster(ExtractOptions(input=str(corpus), output=str(tmp_path / "d.zarr")), client,
                                 ScaleOptions(shard_records=32, torch_threads=1, resolve_auto=True),
                                 config=load_config(**SMALL))
    made = attnx.open_store(tmp_path / "d.zarr")
    assert summary.backend == made.attrs["options"]["backend"] == single.attrs["options"]["backend"] == "onnx"
    assert_same_store(single, made, bound=2.5e-4)

    def onnx_threads_in_worker() -> list[int]:
        import attnx.scaleout.worker as worker

        return [engine[4].threads for engine in worker._ENGINES.values() if type(engine[4]).__name__ == "OnnxBackend"]

    ran = [n for threads in client.run(onnx_threads_in_worker).values() for n in threads]
    assert ran and set(ran) == {1}, ran  # onnxruntime with the worker's one thread, not every core per worker


def test_only_a_local_cpu_cluster_resolves_auto(monkeypatch):
    """``extract_distributed`` asks the coordinator to resolve ``auto`` for ``--workers N`` only: not for an
    existing cluster (``--scheduler``: other machines) or ``--workers gpus``."""
    from contextlib import contextmanager

    import attnx.scaleout.coordinator as coordinator
    from attnx.scaleout.dask_cluster import ClusterSpec

    seen = []

    @contextmanager
    def fake_connect(spec, announce):  # noqa: ANN001, ANN202
        yield None

    monkeypatch.setattr(coordinator, "connect", fake_connect)
    monkeypatch.setattr(coordinator, "extract_on_cluster", lambda opts, client, scale, *a: seen.append(scale))
    opts = ExtractOptions(input="x.txt", output="x.zarr")
    for spec in (ClusterSpec(workers=2), ClusterSpec(scheduler="tcp://h:1"), ClusterSpec(workers="gpus")):
        coordinator.extract_distributed(opts, spec)
    assert [s.resolve_auto for s in seen] == [True, False, False]


def test_existing_cluster_by_scheduler_address(client, corpus, single_store, tmp_path: Path):
    """--scheduler ADDRESS: the same run on a cluster started elsewhere (here: the module's local cluster)."""
    from attnx.scaleout.coordinator import extract_distributed
    from attnx.scaleout.dask_cluster import ClusterSpec

    lines = []
    opts = ExtractOptions(input=str(corpus), output=str(tmp_path / "d.zarr"), backend="torch")
    summary = extract_distributed(opts, ClusterSpec(scheduler=client.scheduler.address), shard_records=32,
                                  config=load_config(**SMALL), announce=lines.append)
    assert summary.records == 150 and lines and "2 workers" in lines[0]
    assert_same_store(single_store, attnx.open_store(tmp_path / "d.zarr"), bound=2.5e-4)


def test_cluster_options_are_checked_in_one_place():
    from attnx.errors import AttnxError
    from attnx.scaleout.dask_cluster import ClusterSpec

    assert ClusterSpec.from_options(2, None).workers == 2
    assert ClusterSpec.from_options("gpus", None).workers == "gpus"
    bad = ((2, "tcp://x:1", "not both"), (0, None, "at least 1"), ("many", None, "number"))
    for workers, scheduler, problem in bad:
        with pytest.raises(AttnxError, match=problem):
            ClusterSpec.from_options(workers, scheduler)


def test_one_dispatch_decides_cluster_or_this_process():
    """attnx.extract, attnx extract and attnx analyze all ask cluster_spec where a run goes."""
    from attnx.errors import AttnxError
    from attnx.scaleout.dask_cluster import ClusterSpec, cluster_spec

    assert cluster_spec(None, None) is None
    assert cluster_spec(2, None, 3, 5) == ClusterSpec(2, None, 3, 5)
    assert cluster_spec(None, "tcp://x:1") == ClusterSpec(None, "tcp://x:1")
    with pytest.raises(AttnxError, match="not both"):
        cluster_spec(2, "tcp://x:1")
