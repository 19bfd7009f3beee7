"""Analysis kernels (numba) vs their numpy references, on the same store in the same run.

Reports MB/s of stored attention processed and maps/s for: features + patterns (one pass; what
``attnx analyze --only features,patterns`` runs per block), on all numba threads and on one, head
similarity (cosine, against its numpy reference and a BLAS Gram matrix per record; JS), the relation kernel
(stores with CoNLL-U words), each on blocks already read into memory (compute only), plus the end-to-end
streamed rate (read + decompress + kernels). The numpy references are 10-1000x slower, so they run on fewer
records: a run of ``--ref-records`` records from the middle of the store (records are stored length-sorted,
so the middle has typical lengths; the similarity and relation kernels likewise take theirs from the middle).

After a warm-up (compilation), ``--repeats`` rounds run every kernel and its reference in turn
(interleaved), reading the 1-minute load before and after each; fast kernels repeat inside a sample until it
lasts >= 0.3 s. Figures are median [min..max] over rounds; the speed-up is the median of each round's ratio.
No ceiling is claimed for the kernels; the machine's memory-copy bandwidth (numpy copy of 256 MiB, median of
5) is printed for scale.

``--memory-records N`` additionally writes a synthetic store of N records through the store API and
analyses it, sampling RSS after every block, to show memory stays flat as the corpus grows.

Writes ``benchmarks/results/kernels.json`` and prints a markdown table. Example::

    python benchmarks/bench_kernels.py --store corpus.zarr --repeats 3 --memory-records 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import psutil
from results_sections import kernels_section

import attnx
from attnx.analysis import AnalyzeParams, analyze_store
from attnx.analysis.blocks import block_input
from attnx.analysis.driver import block_maps, block_patterns
from attnx.benchkit import interleave, load_range, machine, spread, write_result
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


def sampler(fn, min_seconds: float = 0.3):  # noqa: ANN001, ANN201 - () -> {"seconds", "cpu_s"} per call
    """A timed sample of ``fn``: its first call (the warm-up) sets how many calls make one sample last
    >= ``min_seconds``; each later call returns wall and CPU seconds (all threads of this process) per call.

    On a shared machine wall time includes waiting for other processes; CPU time does not, so
    ``bytes / CPU seconds`` is less sensitive to them."""
    inner = 0

    def sample() -> dict:
        nonlocal inner
        if not inner:
            t = time.perf_counter()
            fn()
            inner = max(1, int(min_seconds / max(time.perf_counter() - t, 1e-6)) + 1)
            return {}
        c, t = time.process_time(), time.perf_counter()
        for _ in range(inner):
            fn()
        return {"seconds": (time.perf_counter() - t) / inner, "cpu_s": (time.process_time() - c) / inner}

    return sample


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


def bench_compute(store: attnx.store.AttentionStore, repeats: int, ref_records: int, sim_records: int) -> dict:
    """Every kernel and its reference, interleaved over ``repeats`` rounds; see the module doc."""
    L, H = store.n_layers, store.n_heads
    M = L * H
    blocks = list(store.blocks())
    model = PatternModel.load()
    mid = len(store) // 2

    def middle(n: int) -> attnx.store.AttentionBlock:
        n = min(n, len(store))
        return store.read_block(mid - n // 2, mid - n // 2 + n)

    def feat_pat() -> None:
        for b in blocks:
            block_patterns(block_maps(b, L, H), b, model)

    def one_thread(fn):  # noqa: ANN001, ANN202
        def run() -> None:
            threads = numba.get_num_threads()
            numba.set_num_threads(1)
            try:
                fn()
            finally:
                numba.set_num_threads(threads)
        return run

    ref = middle(ref_records)
    cos_blk, js_blk = middle(sim_records), middle(max(sim_records // 10, 4))
    cos_ref, js_ref = middle(max(2, min(20, sim_records))), middle(2)

    def blas(blk=cos_blk) -> None:  # noqa: ANN001 - a second baseline: BLAS Gram matrix per record, float32
        for k in range(len(blk)):
            X = blk.attn[blk.attn_offsets[k]:blk.attn_offsets[k + 1]].astype(np.float32).reshape(M, -1)
            n = np.linalg.norm(X, axis=1)
            (X @ X.T) / np.outer(n, n)

    def sim(blk, metric, kernel=True):  # noqa: ANN001, ANN202
        if kernel:
            inp = block_input(blk)
            return lambda: head_similarity(inp, blk.attn_offsets, blk.lengths, M, metric)
        return lambda: similarity_ref(blk.attn, blk.scale, blk.attn_offsets, blk.lengths, M, metric)

    def nbytes(blks) -> int:  # noqa: ANN001
        return int(sum(b.attn.nbytes for b in blks))

    # kernel name -> (kernel fn, its bytes, records; reference fn, its bytes, records)
    kernels = {
        "features + patterns": (feat_pat, nbytes(blocks), len(store),
                                lambda: map_features_ref(ref.attn, ref.scale, ref.attn_offsets, ref.lengths, ref.len_a,
                                                         ref.tok_offsets, ref.special, ref.punct, L, H),
                                nbytes([ref]), len(ref)),
        "features + patterns, 1 numba thread": (one_thread(feat_pat), nbytes(blocks), len(store), None, 0, 0),
        "similarity (cosine)": (sim(cos_blk, "cosine"), nbytes([cos_blk]), len(cos_blk),
                                sim(cos_ref, "cosine", False), nbytes([cos_ref]), len(cos_ref)),
        "similarity (cosine), BLAS Gram per record": (blas, nbytes([cos_blk]), len(cos_blk), None, 0, 0),
        "similarity (js)": (sim(js_blk, "js"), nbytes([js_blk]), len(js_blk),
                            sim(js_ref, "js", False), nbytes([js_ref]), len(js_ref)),
    }
    if store.attrs.get("conllu"):
        rel, rr = middle(sim_records * 5), middle(5)
        nrel = len(store.deprels)

        def rel_args(b):  # noqa: ANN001, ANN202
            return (b.attn_offsets, b.lengths, b.tok_offsets, b.special, b.word, b.word_head, b.word_deprel,
                    b.word_offsets)

        inp = block_input(rel)
        kernels["relations"] = (lambda: relation_counts(inp, *rel_args(rel), M, nrel, 10), nbytes([rel]), len(rel),
                                lambda: relations_ref(rr.attn, rr.scale, *rel_args(rr), M, nrel, 10), nbytes([rr]),
                                len(rr))
    end_to_end = "analyze features,patterns (streamed, end to end)"
    kernels[end_to_end] = (lambda: analyze_store(store, AnalyzeParams(only=("features", "patterns"))),
                           int(store.commit.attn * blocks[0].attn.itemsize), len(store), None, 0, 0)
    settings = {}
    for name, (fn, _, _, ref_fn, _, _) in kernels.items():
        settings[name] = sampler(fn, 0.0 if name == end_to_end else 0.3)
        if ref_fn is not None:
            settings[f"{name}: numpy reference"] = sampler(ref_fn, 0.0)
    reps = interleave(settings, repeats, warmup=True, log=print)
    rows = []
    for name, (_, nb, recs, ref_fn, ref_nb, ref_recs) in kernels.items():
        r = reps[name]
        row = {"kernel": name, "bytes": nb, "records": recs, "reps": r,
               "mb_s": spread([nb / x["seconds"] / 1e6 for x in r]),
               "maps_s": spread([recs * M / x["seconds"] for x in r]),
               "mb_per_cpu_s": spread([nb / x["cpu_s"] / 1e6 for x in r])}
        if ref_fn is not None:
            q = reps[f"{name}: numpy reference"]
            ref_mb = [ref_nb / x["seconds"] / 1e6 for x in q]
            row.update(ref_bytes=ref_nb, ref_records=ref_recs, ref_reps=q, ref_mb_s=spread(ref_mb),
                       speedup=spread([a / b for a, b in zip(row["mb_s"]["values"], ref_mb, strict=True)]))
        rows.append(row)
    return {"rows": rows, "load_1min": load_range(reps)}


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
    compute = bench_compute(store, args.repeats, args.ref_records, args.sim_records)
    mem = bench_memory(args.memory_records, work) if args.memory_records else None
    info = store.info()
    out = {
        "harness": "bench_kernels",
        "command": "python benchmarks/bench_kernels.py " + " ".join(sys.argv[1:]),
        "machine": machine(numba_threads=numba.get_num_threads(), memcpy_gb_s=ceiling),
        "repeats": args.repeats,
        "load_1min": compute["load_1min"],
        "store": {"path": "synthetic" if args.store is None else str(store_path), "records": info["records"],
                  "mean_length": info["mean_length"], "layers": len(info["layers"]), "heads": len(info["heads"]),
                  "dtype": info["dtype"], "model": info["model"].get("name")},
        "kernels": compute["rows"],
        "memory": mem,
    }
    path = write_result(RESULTS / "kernels.json", out)
    print("\n" + kernels_section(out) + f"\n-> {path}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
