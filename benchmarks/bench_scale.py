"""Scale-out on a local Dask cluster (issue 9): workers' efficiency, the coordinator's cost, commit growth.

Longer than most files: five small harnesses (and the plan's arithmetic) that share the corpus, cluster and
result helpers; one command per part keeps them runnable alone.

Five parts, each written to ``benchmarks/results/scale_<part>.json`` and printed as a table:

* ``throughput``: the same corpus extracted by one process (the baseline; 1 and 2 torch threads) and on
  local clusters of 1 worker x 1 thread, 2 workers x 1 thread and 1 worker x 2 threads; repeated and
  interleaved, median and spread of sentences/s (after the cluster has started and every worker has loaded
  the model on a warm-up run, so start-up is reported apart), and the efficiency of adding a worker.
* ``coordinator``: a near no-op model (random-bert-tiny: 2 layers, 4 heads, width 64) on many
  small shards, so what is left is the coordinator's own time per shard: reading and cutting the input,
  dispatch (forks), merging (edges), commits, and waiting.
* ``commits``: no model, no Dask: shards of synthetic records written through forks, merged and committed
  one by one as in a run, up to ``--shards``; commit latency and the repository's metadata bytes (snapshots,
  manifests, transaction logs, refs) as the store grows.

    python benchmarks/bench_scale.py throughput --input ../shared/data/ud_english_ewt/sentences.txt --limit 2000
    python benchmarks/bench_scale.py coordinator --shards 200
    python benchmarks/bench_scale.py commits --shards 10000
    python benchmarks/bench_scale.py inputs --input ../shared/data/ud_english_ewt/train/sentences.txt

* ``inputs``: how fast the coordinator cuts a corpus into shards (lines/s), and the attention bytes a
  sentence costs (mean l^2 of real sentences x maps x bytes), for the arithmetic in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import attnx
from attnx.benchkit import machine, spread

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ------------------------------------------------------------------------------------------------------------
# throughput
# ------------------------------------------------------------------------------------------------------------
def _corpus(path: str | None, limit: int, work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    src = Path(path) if path else ROOT / "src" / "attnx" / "data" / "sample.txt"
    lines = [ln for ln in src.read_text().splitlines() if ln.strip()]
    while len(lines) < limit:
        lines += lines
    out = work / "corpus.txt"
    out.write_text("\n".join(lines[:limit]) + "\n")
    return out


def _single(corpus: Path, out: Path, threads: int, model: str) -> float:
    from attnx.config import load_config
    from attnx.engine.extract import ExtractOptions, extract

    s = extract(
        ExtractOptions(input=str(corpus), output=str(out), model=model, overwrite=True),
        config=load_config(cpu_threads=threads, precision_check_records=0),
    )
    return s.sentences_per_s


def _cluster_run(client, corpus: Path, out: Path, threads: int, shard: int, model: str) -> dict:
    from attnx.config import load_config
    from attnx.engine.extract import ExtractOptions
    from attnx.scaleout.coordinator import ScaleOptions, extract_on_cluster

    s = extract_on_cluster(
        ExtractOptions(input=str(corpus), output=str(out), model=model, overwrite=True),
        client,
        ScaleOptions(shard_records=shard, torch_threads=threads),
        config=load_config(precision_check_records=0),
    )
    return {"sent_per_s": s.sentences_per_s, "seconds": s.seconds, "phases": s.phases, "records": s.records}


def throughput(args: argparse.Namespace) -> dict:
    from attnx.scaleout.dask_cluster import ClusterSpec, connect

    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    corpus = _corpus(args.input, args.limit, work)
    warm = _corpus(args.input, min(64, args.limit), work / "w")
    settings = [("1 worker x 1 thread", 1, 1), ("2 workers x 1 thread", 2, 1), ("1 worker x 2 threads", 1, 2)]
    rows: dict[str, list] = {"single process, 1 thread": [], "single process, 2 threads": []}
    rows.update({name: [] for name, _, _ in settings})
    startup: dict[str, list] = {name: [] for name, _, _ in settings}
    phases: dict[str, list] = {name: [] for name, _, _ in settings}
    load = []
    for rep in range(args.repeat):
        load.append(os.getloadavg()[0])
        for threads in (1, 2):
            rows[f"single process, {threads} thread{'s' if threads > 1 else ''}"].append(
                _single(corpus, work / "single.zarr", threads, args.model)
            )
        for name, workers, threads in settings:
            t0 = time.perf_counter()
            with connect(ClusterSpec(workers=workers, threads_per_worker=threads), announce=lambda line: None) as c:
                _cluster_run(c, warm, work / "warm.zarr", threads, 32, args.model)  # every worker loads the model
                startup[name].append(time.perf_counter() - t0)
                r = _cluster_run(c, corpus, work / "d.zarr", threads, args.shard_records, args.model)
            rows[name].append(r["sent_per_s"])
            phases[name].append(r["phases"])
        print(f"repeat {rep + 1}/{args.repeat} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    load.append(os.getloadavg()[0])
    base = statistics.median(rows["1 worker x 1 thread"])
    out = {
        "part": "throughput",
        "model": args.model,
        "records": args.limit,
        "shard_records": args.shard_records,
        "input": args.input or "bundled sample (repeated)",
        "repeat": args.repeat,
        "load_1min": load,
        "sent_per_s": {k: spread(v) for k, v in rows.items()},
        "startup_s": {k: spread(v) for k, v in startup.items()},
        "coordinator_phases_s": phases,
        "efficiency_2_workers": statistics.median(rows["2 workers x 1 thread"]) / (2 * base),
        "speedup_2_workers_vs_1": statistics.median(rows["2 workers x 1 thread"]) / base,
        "ratio_2_workers_vs_single_2_threads": statistics.median(rows["2 workers x 1 thread"])
        / statistics.median(rows["single process, 2 threads"]),
    }
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'setting':32s} {'sent/s median':>14s} {'min..max':>16s}")
    for k, v in out["sent_per_s"].items():
        s = v
        print(f"{k:32s} {s['median']:14.1f} {s['min']:7.1f}..{s['max']:<7.1f}")
    print(
        f"efficiency of the 2nd worker: {out['efficiency_2_workers']:.2f}; "
        f"2 workers / single process (2 threads): {out['ratio_2_workers_vs_single_2_threads']:.2f}"
    )
    return out


# ------------------------------------------------------------------------------------------------------------
# coordinator cost per shard
# ------------------------------------------------------------------------------------------------------------
def coordinator(args: argparse.Namespace) -> dict:
    from attnx.scaleout.dask_cluster import ClusterSpec, connect

    work = Path(tempfile.mkdtemp(prefix="bench_coord_"))
    corpus = _corpus(args.input, args.shards * args.shard_records, work)
    runs = []
    with connect(ClusterSpec(workers=2, threads_per_worker=1), announce=lambda line: None) as c:
        _cluster_run(
            c,
            _corpus(None, 32, work / "w"),
            work / "warm.zarr",
            1,
            16,
            args.model,
        )
        for _ in range(args.repeat):
            load = os.getloadavg()[0]
            r = _cluster_run(c, corpus, work / "d.zarr", 1, args.shard_records, args.model)
            r["load_1min"] = load
            r["commits"] = len(attnx.open_store(work / "d.zarr").history())
            r["per_shard_ms"] = {k: 1e3 * v / args.shards for k, v in r["phases"].items()}
            # the coordinator's own work: reading/cutting, forks, merges, commits (not waiting, not the workers')
            r["busy_ms_per_shard"] = sum(v for k, v in r["per_shard_ms"].items() if k not in ("wait", "workers_busy"))
            runs.append(r)
    shutil.rmtree(work, ignore_errors=True)
    busy = [r["busy_ms_per_shard"] for r in runs]
    out = {
        "part": "coordinator",
        "model": args.model,
        "shards": args.shards,
        "shard_records": args.shard_records,
        "repeat": args.repeat,
        "runs": runs,
        "busy_ms_per_shard": spread(busy),
        "wall_ms_per_shard": spread([1e3 * r["seconds"] / args.shards for r in runs]),
    }
    print(
        f"\ncoordinator busy time per shard: {out['busy_ms_per_shard']['median']:.1f} ms "
        f"(min {min(busy):.1f}, max {max(busy):.1f}); wall per shard "
        f"{out['wall_ms_per_shard']['median']:.1f} ms"
    )
    for k, v in runs[len(runs) // 2]["per_shard_ms"].items():
        print(f"  {k:10s} {v:8.2f} ms/shard")
    return out


# ------------------------------------------------------------------------------------------------------------
# commit rate and metadata size as shards grow (no model, no Dask)
# ------------------------------------------------------------------------------------------------------------
def _metadata_bytes(root: Path) -> dict:
    out = {}
    for part in ("snapshots", "manifests", "transactions", "refs", "chunks"):
        d = root / part
        out[part] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) if d.exists() else 0
    out["metadata"] = sum(v for k, v in out.items() if k != "chunks")
    return out


def commits(args: argparse.Namespace) -> dict:
    import icechunk

    from attnx.store import StoredBatch, StoreWriter, WriterConfig
    from attnx.store.layout import small_arrays
    from attnx.store.region import RegionWriter

    icechunk.set_logs_filter("icechunk=error")
    work = Path(tempfile.mkdtemp(prefix="bench_commits_"))
    root = work / "s.zarr"
    per, length = args.records_per_shard, 12
    meta = {
        "model": {"name": "synthetic", "layers": 1, "heads": 1, "weights_sha256": "0"},
        "layers": [0],
        "heads": [0],
        "options": {"max_length": 64},
        "batching": {"window_records": per},
        "input": {},
    }
    w = StoreWriter.create(
        str(root),
        meta,
        ["[PAD]", "a"],
        "float16",
        "blosc-lz4",
        args.attn_chunk,
        1 << 16,
        1 << 20,
        config=WriterConfig(commit_bytes=1 << 60, commit_seconds=1e9),
    )
    rng = np.random.default_rng(0)
    attn = rng.random(per * length * length).astype(np.float16)
    names = ["attn", *small_arrays(False)]
    groups = {n: ("payload" if n == "attn" else n.split("/")[0]) for n in names}
    size = {"payload": per * length * length, "rec": per, "tok": per * length}
    checkpoints = sorted({int(x) for x in np.unique(np.geomspace(10, args.shards, 12).astype(int))} | {args.shards})
    rows, lat = [], []
    capacity = {n: 0 for n in names}
    t_start = time.perf_counter()
    for k in range(args.shards):
        start = w.totals()
        end = {n: start[n] + size[groups[n]] for n in names}
        if any(end[n] > capacity[n] for n in names):  # grow by doubling, as the coordinator does
            capacity = {n: max(end[n], 2 * capacity[n]) for n in names}
            w.reserve(capacity)
            w.commit_now(force=True)
        fork = w.fork()
        rw = RegionWriter(fork, w.attrs, start, end, None)
        ids = np.arange(k * per, (k + 1) * per, dtype=np.int64)
        rw.append(
            StoredBatch(
                attn=attn,
                input_id=ids,
                length=np.full(per, length, np.int32),
                len_a=np.full(per, length, np.int32),
                line=ids + 1,
                truncated=np.zeros(per, bool),
                tokens={
                    "ids": np.ones(per * length, np.int32),
                    "segment": np.zeros(per * length, np.int8),
                    "special": np.zeros(per * length, bool),
                    "punct": np.zeros(per * length, bool),
                    "word": np.zeros(per * length, np.int32),
                },
            )
        )
        edges = {n: e.as_tuple() for n, e in rw.finish().items()}
        w.merge_shard(
            rw.fork,
            edges,
            {"records": per, "words": 0, "input_window": k, "input_digest": "", "payload_bytes": attn.nbytes},
        )
        t0 = time.perf_counter()
        w.commit_now()
        lat.append(time.perf_counter() - t0)
        if k + 1 in checkpoints:
            recent = lat[-min(50, len(lat)) :]
            rows.append(
                {
                    "shards": k + 1,
                    "commit_ms_median_last50": 1e3 * statistics.median(recent),
                    "commit_ms_max_last50": 1e3 * max(recent),
                    "elapsed_s": time.perf_counter() - t_start,
                    "load_1min": os.getloadavg()[0],
                    **_metadata_bytes(root),
                }
            )
            r = rows[-1]
            print(
                f"{k + 1:6d} shards: commit {r['commit_ms_median_last50']:7.1f} ms "
                f"(max {r['commit_ms_max_last50']:.1f}), metadata {r['metadata'] / 1e6:8.2f} MB, "
                f"chunks {r['chunks'] / 1e6:8.1f} MB",
                file=sys.stderr,
            )
    w.finish()
    out = {
        "part": "commits",
        "shards": args.shards,
        "records_per_shard": per,
        "attn_chunk": args.attn_chunk,
        "rows": rows,
        "store": "local filesystem, Icechunk " + icechunk.__version__,
    }
    shutil.rmtree(work, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------------------------
# the coordinator's input rate, and the bytes a sentence costs (for the plan in RESULTS.md)
# ------------------------------------------------------------------------------------------------------------
def inputs(args: argparse.Namespace) -> dict:
    from attnx.engine.model import load_model
    from attnx.engine.sources import Source
    from attnx.engine.tokenize import WindowTokenizer
    from attnx.scaleout.shards import cut_shards

    src = Path(args.input) if args.input else ROOT / "src" / "attnx" / "data" / "sample.txt"
    lines = [ln for ln in src.read_text().splitlines() if ln.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench_cut_"))
    big = work / "big.txt"
    text = "\n".join(lines) + "\n"
    with open(big, "w") as fh:
        while fh.tell() < args.cut_mb << 20:
            fh.write(text)
    nbytes = big.stat().st_size
    rates = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        n = sum(s.records for s in cut_shards(Source(str(big)), args.shard_records))
        dt = time.perf_counter() - t0
        rates.append({"MB_per_s": nbytes / dt / 1e6, "lines_per_s": n / dt, "load_1min": os.getloadavg()[0]})
    shutil.rmtree(work, ignore_errors=True)
    tok = WindowTokenizer(load_model("minilm").tokenizer, 512)  # BERT's uncased WordPiece vocabulary
    window = tok([type("R", (), {"text_a": t, "text_b": None, "words": None, "line": 0, "id": 0})() for t in lines])
    sq = window.length.astype(np.float64) ** 2
    per_map = float(sq.mean())
    out = {
        "part": "inputs",
        "input": str(src),
        "sentences": len(lines),
        "file_mb": nbytes / 1e6,
        "cut": rates,
        "cut_lines_per_s": spread([r["lines_per_s"] for r in rates]),
        "mean_tokens": float(window.length.mean()),
        "mean_l2": per_map,
        "bytes_per_sentence": {
            "bert_base_float16": 144 * per_map * 2,
            "minilm_float16": 72 * per_map * 2,
        },
    }
    print(
        f"cut: {out['cut_lines_per_s']['median']:,.0f} lines/s ({statistics.median(r['MB_per_s'] for r in rates):.0f}"
        f" MB/s); mean length {out['mean_tokens']:.1f} tokens, mean l^2 {per_map:.0f}: BERT-base float16 maps "
        f"{out['bytes_per_sentence']['bert_base_float16'] / 1e3:.0f} KB per sentence (before compression)"
    )
    return out


# ------------------------------------------------------------------------------------------------------------
# the plan for 10^9 sentences: arithmetic on the measured figures, every assumption named
# ------------------------------------------------------------------------------------------------------------
ASSUMPTIONS = {
    "sentences": 1e9,
    "gpus": 64,
    "gpu_sent_per_s": 5000,  # BERT-base fp16 capture on one H100/H200: NOT measured here (no device was lent)
    "gpu_sent_per_s_range": [2000, 10000],
    "shard_records": 16384,  # the --shard-records default
    "attn_chunk_elems": 4 << 20,  # Config.attn_chunk_elems
    "manifest_split_chunks": 1024,  # store.writer._repo_config
    "maps": 144,  # BERT-base: 12 layers x 12 heads
    "object_store_commit_factor": 5,  # an S3 commit is assumed 5x the local-disk commit measured here
    "commit_seconds": 10,  # Config.commit_seconds
}


def plan(args: argparse.Namespace) -> dict:
    a = ASSUMPTIONS
    inputs_ = json.loads((RESULTS / "scale_inputs.json").read_text())
    commits_ = json.loads((RESULTS / "scale_commits.json").read_text())
    coord = json.loads((RESULTS / "scale_coordinator.json").read_text())
    codecs = {(r["dtype"], r["codec"]): r for r in json.loads((RESULTS / "codecs.json").read_text())["summary"]}
    raw = inputs_["mean_l2"] * a["maps"] * 2  # float16 bytes of one sentence's maps
    bits = {
        "float16": codecs[("float16", "blosc-lz4-bit-5")]["bits_per_value"],
        "q10": codecs[("q10", "blosc-zstd-bit-5")]["bits_per_value"],
    }
    stored = {k: raw * b / 16 for k, b in bits.items()}  # bytes per sentence in the store
    commit_ms = statistics.median(r["commit_ms_median_last50"] for r in commits_["rows"])
    last = commits_["rows"][-1]
    meta_per_commit = last["metadata"] / last["shards"]
    busy_ms = statistics.median(
        sum(v for k, v in r["per_shard_ms"].items() if k in ("read", "dispatch", "merge")) for r in coord["runs"]
    )
    rate = a["gpus"] * a["gpu_sent_per_s"]
    seconds = a["sentences"] / rate
    shards = a["sentences"] / a["shard_records"]
    shard_rate = rate / a["shard_records"]
    commits = shards / a["gpus"] + seconds / a["commit_seconds"]  # a commit per dispatch round, and by time
    commit_s = commits * commit_ms / 1e3 * a["object_store_commit_factor"]
    elements = a["sentences"] * inputs_["mean_l2"] * a["maps"]
    chunks = elements / a["attn_chunk_elems"]
    out = {
        "part": "plan",
        "assumptions": a,
        "measured": {
            "bytes_per_sentence_raw": raw,
            "mean_l2": inputs_["mean_l2"],
            "bits_per_value": bits,
            "commit_ms_local": commit_ms,
            "metadata_bytes_per_commit": meta_per_commit,
            "coordinator_ms_per_shard_without_commits": busy_ms,
            "cut_lines_per_s": inputs_["cut_lines_per_s"]["median"],
        },
        "hours": seconds / 3600,
        "hours_range": [a["sentences"] / (a["gpus"] * r) / 3600 for r in reversed(a["gpu_sent_per_s_range"])],
        "shards": shards,
        "shard_rate_per_s": shard_rate,
        "store_tb": {k: a["sentences"] * v / 1e12 for k, v in stored.items()},
        "write_gb_per_s": {k: rate * v / 1e9 for k, v in stored.items()},
        "raw_gb_per_s_per_gpu": a["gpu_sent_per_s"] * raw / 1e9,
        "chunks": chunks,
        "manifests": chunks / a["manifest_split_chunks"],
        "commits": commits,
        "commit_share_of_run": commit_s / seconds,
        "metadata_gb": commits * meta_per_commit / 1e9,
        "coordinator_share_without_commits": shard_rate * busy_ms / 1e3,
        "coordinator_max_shards_per_s": 1e3 / busy_ms,
        "cut_share_of_one_core": rate / inputs_["cut_lines_per_s"]["median"],
    }
    print(
        f"10^9 sentences, {a['gpus']} GPUs at an assumed {a['gpu_sent_per_s']:,} sent/s each: "
        f"{out['hours']:.1f} h; {shards:,.0f} shards ({shard_rate:.1f}/s); store {out['store_tb']['float16']:.0f} TB "
        f"float16 / {out['store_tb']['q10']:.0f} TB q10; writes {out['write_gb_per_s']['float16']:.0f} GB/s; "
        f"{commits:,.0f} commits ({out['commit_share_of_run']:.1%} of the run); "
        f"cut {out['cut_share_of_one_core']:.0%} of one core"
    )
    return out


def main() -> None:
    import icechunk

    icechunk.set_logs_filter("icechunk=error")  # attnx holds the writer lock; the local-commit warning is noise
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["throughput", "coordinator", "commits", "inputs", "plan"])
    ap.add_argument("--input", default=None, help="a text file of sentences (default: the bundled sample)")
    ap.add_argument("--limit", type=int, default=1200)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shard-records", type=int, default=256)
    ap.add_argument("--shards", type=int, default=200)
    ap.add_argument("--records-per-shard", type=int, default=64)
    ap.add_argument("--attn-chunk", type=int, default=4096)
    ap.add_argument("--cut-mb", type=int, default=64, help="inputs: size of the corpus cut into shards")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.part == "coordinator" and args.model == "minilm":
        args.model = "random-bert-tiny"
    result = {
        "part": args.part,
        "machine": machine(load_1min_start=os.getloadavg()[0]),
        **{"throughput": throughput, "coordinator": coordinator, "commits": commits, "inputs": inputs, "plan": plan}[
            args.part
        ](args),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) if args.out else RESULTS / f"scale_{args.part}.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
