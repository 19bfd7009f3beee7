"""Analysis kernels (numba) vs their numpy references, on the same store in the same run.

Reports MB/s of stored attention processed and maps/s for: features + patterns (one pass; what
``attnx analyze --only features,patterns`` runs per block), head similarity (cosine; JS), and the
relation kernel, each as the median of ``--repeats`` timed runs after a warm-up, on blocks already read
into memory (compute only), plus the end-to-end streamed rate (read + decompress + kernels). The numpy
references are timed on a prefix of the same records (they are 10-1000x slower). The ceiling printed is
this machine's memory-copy bandwidth (numpy copy of 256 MiB, median of 5).

``--memory-records N`` additionally writes a synthetic store of N records through the store API and
analyses it, sampling peak RSS after every block, to show memory stays flat as the corpus grows.

Writes ``benchmarks/results/kernels.json`` and prints a markdown table. Example::

    python benchmarks/bench_kernels.py --store corpus.zarr --repeats 3 --memory-records 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import psutil

import attnx
from attnx.analysis import AnalyzeParams, analyze_store
from attnx.analysis.run import block_maps, block_patterns
from attnx.kernels.common import block_input
from attnx.kernels.pattern_model import PatternModel
from attnx.kernels.reference import map_features_ref, relations_ref, similarity_ref
from attnx.kernels.relations import relation_counts
from attnx.kernels.similarity import head_similarity
from attnx.store import StoredBatch, StoreWriter

RESULTS = Path(__file__).resolve().parent / "results"


def memcpy_gbps() -> float:
    a = np.ones(256 << 18, np.float32)  # 256 MiB
    b = np.empty_like(a)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        ts.append(time.perf_counter() - t)
    return a.nbytes / statistics.median(ts) / 1e9


CPU: list[float] = []  # CPU seconds (all threads) of the last timed() call's median run


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    """Median wall seconds per call over ``repeats`` samples (each >= ~0.3 s of calls) after a warm-up; the
    matching CPU seconds go to ``CPU``.

    On a shared machine wall time includes waiting for other processes; CPU time (all threads of this
    process) does not, so ``bytes / CPU seconds * cores`` is the rate an idle machine would approach.
    """
    t = time.perf_counter()
    fn()  # warm-up (and compile)
    fn()
    inner = max(1, int(0.3 / max(time.perf_counter() - t, 1e-6) * 2))  # each sample runs >= ~0.3 s
    runs = []
    for _ in range(repeats):
        c = time.process_time()
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append(((time.perf_counter() - t) / inner, (time.process_time() - c) / inner))
    runs.sort()
    wall, cpu = runs[len(runs) // 2]
    CPU[:] = [cpu]
    return wall


def synthetic_store(path: Path, n: int, layers: int, heads: int, seed: int = 0, mean_len: float = 25.0,
                    batch: int = 2048, conllu: bool = False) -> Path:
    """A store of ``n`` records with lognormal lengths (mean ~``mean_len``) and softmax maps with a
    [CLS] sink and a previous-token diagonal, written through :class:`StoreWriter` in batches."""
    rng = np.random.default_rng(seed)
    w = StoreWriter.create(path, meta={"layers": list(range(layers)), "heads": list(range(heads)),
                                       "model": {"name": f"synthetic-{layers}x{heads}", "layers": layers,
                                                 "heads": heads}},
                           vocab=[f"t{k}" for k in range(100)], dtype="float16", codec="blosc-lz4",
                           attn_chunk_elems=4 << 20, record_chunk=1 << 16, token_chunk=1 << 20, conllu=conllu)
    deprels = np.array(["nsubj", "obj", "det", "amod", "punct"], dtype=object)
    done = 0
    while done < n:
        b = min(batch, n - done)
        lengths = np.clip(rng.lognormal(np.log(mean_len) - 0.1, 0.45, b).astype(np.int64), 3, 128)
        parts, special, punct, word, counts = [], [], [], [], []
        for l in lengths:
            x = rng.standard_normal((layers * heads, l, l)).astype(np.float32) * 2
            x[:, :, 0] += 3.0
            x[:, np.arange(1, l), np.arange(l - 1)] += 2.0
            x = np.exp(x - x.max(-1, keepdims=True))
            parts.append((x / x.sum(-1, keepdims=True)).astype(np.float16).reshape(-1))
            s = np.zeros(l, bool)
            s[[0, l - 1]] = True
            special.append(s)
            punct.append(rng.random(l) < 0.1)
            word.append(np.where(s, -1, np.arange(l) - 1).astype(np.int32))
            counts.append(l - 2)
        counts = np.array(counts, np.int64)
        words = None
        if conllu:
            head = np.concatenate([rng.integers(-1, c, c) for c in counts]).astype(np.int32)
            words = {"head": head, "deprel": deprels[rng.integers(0, len(deprels), int(counts.sum()))]}
        T = int(lengths.sum())
        w.append(StoredBatch(
            attn=np.concatenate(parts), input_id=np.arange(done, done + b, dtype=np.int64),
            length=lengths.astype(np.int32), len_a=lengths.astype(np.int32),
            line=np.arange(done, done + b, dtype=np.int64) + 1, truncated=np.zeros(b, bool),
            tokens={"ids": np.zeros(T, np.int32), "segment": np.zeros(T, np.int8), "special": np.concatenate(special),
                    "punct": np.concatenate(punct), "word": np.concatenate(word)},
            words=words, word_count=counts if conllu else None))
        done += b
    w.finish()
    return path


def bench_compute(store: attnx.store.AttentionStore, repeats: int, ref_records: int, sim_records: int) -> list[dict]:
    L, H = store.n_layers, store.n_heads
    M = L * H
    blocks = list(store.blocks(64 << 20))
    nbytes = sum(b.attn.nbytes for b in blocks)
    maps = len(store) * M
    model = PatternModel.load()
    rows = []

    def feat_pat() -> None:
        for b in blocks:
            block_patterns(block_maps(b, L, H), b, model)

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    t1 = timed(feat_pat, repeats)
    cpu1 = CPU[0]
    numba.set_num_threads(threads)
    t = timed(feat_pat, repeats)
    cpu = CPU[0]
    mid = len(store) // 2  # records are length-sorted: take the references' records from the middle
    ref_blk = store.read_block(max(0, mid - ref_records // 2), min(len(store), mid + (ref_records + 1) // 2))
    ref_maps = len(ref_blk) * M

    def feat_ref() -> None:
        map_features_ref(ref_blk.attn, ref_blk.scale, ref_blk.attn_offsets, ref_blk.lengths, ref_blk.len_a,
                         ref_blk.tok_offsets, ref_blk.special, ref_blk.punct, L, H)

    tr = timed(feat_ref, 1)
    rows.append(dict(kernel="features + patterns", numba_s=t, numba_mb_s=nbytes / t / 1e6, numba_maps_s=maps / t,
                     numba_mb_per_cpu_s=nbytes / cpu / 1e6, one_thread_mb_s=nbytes / t1 / 1e6,
                     one_thread_mb_per_cpu_s=nbytes / cpu1 / 1e6,
                     ref_mb_s=ref_blk.attn.nbytes / tr / 1e6, ref_maps_s=ref_maps / tr,
                     speedup=(nbytes / t) / (ref_blk.attn.nbytes / tr), bytes=nbytes, records=len(store)))
    def middle(n: int) -> attnx.store.AttentionBlock:
        n = min(n, len(store))
        return store.read_block(mid - n // 2, mid - n // 2 + n)

    sim_blk = middle(sim_records)
    for metric, nref in (("cosine", max(2, min(20, sim_records))), ("js", 2)):
        blk = sim_blk if metric == "cosine" else middle(max(sim_records // 10, 4))
        inp = block_input(blk)
        t = timed(lambda blk=blk, inp=inp, metric=metric:
                  head_similarity(inp, blk.attn_offsets, blk.lengths, M, metric), repeats)
        cpu = CPU[0]
        rb = middle(nref)
        tr = timed(lambda rb=rb, metric=metric:
                   similarity_ref(rb.attn, rb.scale, rb.attn_offsets, rb.lengths, M, metric), 1)
        rows.append(dict(kernel=f"similarity ({metric})", numba_s=t, numba_mb_s=blk.attn.nbytes / t / 1e6,
                         numba_mb_per_cpu_s=blk.attn.nbytes / cpu / 1e6,
                         numba_maps_s=len(blk) * M / t, ref_mb_s=rb.attn.nbytes / tr / 1e6, ref_maps_s=nref * M / tr,
                         speedup=(blk.attn.nbytes / t) / (rb.attn.nbytes / tr), bytes=int(blk.attn.nbytes),
                         records=len(blk)))
        if metric == "cosine":  # an honest second baseline: BLAS Gram matrix per record, float32
            def blas(blk=blk) -> None:  # noqa: ANN001
                for k in range(len(blk)):
                    X = blk.attn[blk.attn_offsets[k]:blk.attn_offsets[k + 1]].astype(np.float32).reshape(M, -1)
                    n = np.linalg.norm(X, axis=1)
                    (X @ X.T) / np.outer(n, n)
            tb = timed(blas, 1)
            rows[-1]["blas_mb_s"] = blk.attn.nbytes / tb / 1e6
    if store.attrs.get("conllu"):
        rel_blk = middle(sim_records * 5)
        args = (rel_blk.attn_offsets, rel_blk.lengths, rel_blk.tok_offsets, rel_blk.special, rel_blk.word,
                rel_blk.word_head, rel_blk.word_deprel, rel_blk.word_offsets)
        nrel = len(store.deprels)
        inp = block_input(rel_blk)
        t = timed(lambda: relation_counts(inp, *args, M, nrel, 10), repeats)
        cpu = CPU[0]
        rb = middle(5)
        rargs = (rb.attn_offsets, rb.lengths, rb.tok_offsets, rb.special, rb.word, rb.word_head, rb.word_deprel,
                 rb.word_offsets)
        tr = timed(lambda: relations_ref(rb.attn, rb.scale, *rargs, M, nrel, 10), 1)
        rows.append(dict(kernel="relations", numba_s=t, numba_mb_s=rel_blk.attn.nbytes / t / 1e6,
                         numba_mb_per_cpu_s=rel_blk.attn.nbytes / cpu / 1e6,
                         numba_maps_s=len(rel_blk) * M / t, ref_mb_s=rb.attn.nbytes / tr / 1e6,
                         ref_maps_s=len(rb) * M / tr, speedup=(rel_blk.attn.nbytes / t) / (rb.attn.nbytes / tr),
                         bytes=int(rel_blk.attn.nbytes), records=len(rel_blk)))
    # end to end: streamed read + decompress + features + patterns
    t0 = time.perf_counter()
    c0 = time.process_time()
    part = analyze_store(store, AnalyzeParams(only=("features", "patterns")))
    te = time.perf_counter() - t0
    ce = time.process_time() - c0
    rows.append(dict(kernel="analyze features,patterns (streamed, end to end)", numba_s=te,
                     numba_mb_s=part.attn_bytes / te / 1e6, numba_maps_s=part.records * M / te, bytes=part.attn_bytes,
                     numba_mb_per_cpu_s=part.attn_bytes / ce / 1e6,
                     records=part.records))
    return rows


def bench_memory_one(n: int, workdir: Path) -> dict:
    """Write (once) and analyse a store of ``n`` tiny records (1 layer x 2 heads, l ~ 8); RSS per block."""
    path = workdir / f"mem_{n}.zarr"
    t0 = time.perf_counter()
    if not path.exists():
        synthetic_store(path, n, 1, 2, mean_len=8.0, batch=8192)
    write_s = time.perf_counter() - t0
    store = attnx.open_store(path)
    proc = psutil.Process()
    samples = []

    def progress(records: int, nbytes: int) -> None:
        progress.done += records
        samples.append((progress.done, proc.memory_info().rss))

    progress.done = 0
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    analyze_store(store, AnalyzeParams(only=("features", "patterns"), max_bytes=16 << 20), progress=progress)
    dt = time.perf_counter() - t0
    marks = {}
    for frac in (0.1, 0.25, 0.5, 0.75, 1.0):
        k = min(len(samples) - 1, max(0, int(frac * len(samples)) - 1))
        marks[f"{int(frac * 100)}%"] = round(samples[k][1] / 2**20, 1)
    return {"records": len(store), "attn_mb": store.commit.attn * 2 / 1e6, "write_s": write_s, "analyze_s": dt,
            "rss_before_mib": round(rss0 / 2**20, 1), "rss_mib_at_progress": marks,
            "peak_rss_mib": _vm_hwm_mib(), "peak_rss_sampled_mib": round(max(r for _, r in samples) / 2**20, 1)}


def _vm_hwm_mib() -> float:
    """Peak RSS of this process image (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bench_memory(n: int, workdir: Path) -> list[dict]:
    """Each size in a fresh process (so peak RSS is its own): n/10, n/4 and n records, 16 MB blocks."""
    import subprocess

    out = []
    for size in (max(1, n // 10), max(1, n // 4), n):
        res = subprocess.run([sys.executable, __file__, "--memory-only", str(size), "--workdir", str(workdir)],
                             capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=None, help="store to benchmark on (default: synthetic 6x12)")
    ap.add_argument("--records", type=int, default=3000, help="records of the synthetic store")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref-records", type=int, default=40, help="records the numpy feature reference runs on")
    ap.add_argument("--sim-records", type=int, default=200, help="records for the similarity kernels")
    ap.add_argument("--memory-records", type=int, default=0, help="also run the flat-RSS test with this many")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--memory-only", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_only:
        print(json.dumps(bench_memory_one(args.memory_only, args.workdir)))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="attnx_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.store is None:
        path = work / f"synthetic_{args.records}.zarr"
        if not path.exists():
            synthetic_store(path, args.records, 6, 12, conllu=True)
        store_path = path
    else:
        store_path = args.store
    store = attnx.open_store(store_path)
    ceiling = memcpy_gbps()
    rows = bench_compute(store, args.repeats, args.ref_records, args.sim_records)
    mem = bench_memory(args.memory_records, work) if args.memory_records else None
    info = store.info()
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "numba_threads": numba.get_num_threads(), "python": sys.version.split()[0],
                    "numba": numba.__version__, "numpy": np.__version__, "memcpy_gb_s": ceiling,
                    "load_avg_1m": os.getloadavg()[0]},
        "store": {"path": str(store_path), "records": info["records"], "mean_length": info["mean_length"],
                  "layers": len(info["layers"]), "heads": len(info["heads"]), "dtype": info["dtype"],
                  "model": info["model"].get("name")},
        "kernels": rows,
        "memory": mem,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kernels.json").write_text(json.dumps(out, indent=2))
    print(f"\nstore: {store_path} ({info['records']} records, mean l {info['mean_length']:.1f}, "
          f"{len(info['layers'])}x{len(info['heads'])} heads, {info['dtype']}); {os.cpu_count()} cores, "
          f"{numba.get_num_threads()} numba threads; memory-copy ceiling {ceiling:.1f} GB/s; "
          f"1-min load average {os.getloadavg()[0]:.1f}\n")
    print("| kernel | numba MB/s (wall) | numba maps/s (wall) | numba MB per CPU-s | numpy ref MB/s "
          "| speed-up (wall) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ref = f"{r['ref_mb_s']:.2f}" if "ref_mb_s" in r else "-"
        sp = f"{r['speedup']:.0f}x" if "speedup" in r else "-"
        extra = f" (BLAS Gram per record: {r['blas_mb_s']:.0f} MB/s)" if "blas_mb_s" in r else ""
        print(f"| {r['kernel']}{extra} | {r['numba_mb_s']:.1f} | {r['numba_maps_s']:,.0f} | "
              f"{r.get('numba_mb_per_cpu_s', float('nan')):.0f} | {ref} | {sp} |")
    f = rows[0]
    print(f"\nfeatures + patterns with 1 numba thread: {f['one_thread_mb_s']:.0f} MB/s wall, "
          f"{f['one_thread_mb_per_cpu_s']:.0f} MB per CPU-second")
    for m in mem or []:
        print(f"memory: {m['records']:>9,} records ({m['attn_mb']:4.0f} MB float16) analysed in "
              f"{m['analyze_s']:4.1f} s; peak RSS {m['peak_rss_mib']} MiB; RSS before {m['rss_before_mib']} MiB, "
              "at progress " + ", ".join(f"{k}: {v}" for k, v in m["rss_mib_at_progress"].items()))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
