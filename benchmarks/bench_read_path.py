"""The read path against its codec ceiling, measured in one run on one store (issue 19, item 3).

Modes, interleaved in every round (after one warm-up pass that compiles the kernels and fills the page cache):

* ``numcodecs_T``: the ceiling: numcodecs' blosc decode alone of the payload's chunk objects, already in memory
  (no fetch, no checksum), into one reused buffer per thread, on T = 1 and 2 threads;
* ``attnx_T``: what ``analyze`` reads: ``AttentionStore.blocks(threads=T, reuse=True)`` (Icechunk fetch, crc32c,
  decode of the payload and the five token arrays, the block hand-off), T = 1 and 2;
* ``attnx_T_unchecked``: the same without the reader's check of the maps' values (``check_maps=False``: what
  ``analyze`` reads, checking the values inside its feature kernel); the decode targets are read on these rows;
* ``zarr_path_1``: the same with every array read through zarr's codec pipeline instead of
  :mod:`attnx.store.chunk_reader` (the reader before issue 19), one thread: the A/B of the change in the same run;
* ``analyze``: ``analyze_store(only=features,patterns)`` end to end, as ``attnx analyze --only
  features,patterns`` runs it (reader threads and kernels together).

GB are of stored float16 (elements x 2 bytes, before compression); core-seconds are user + system time of the
whole process (all threads) per GB. Targets (the issue): attnx decode <= 0.5 core-s/GB or >= 80% of the
numcodecs ceiling's GB/s at the same thread count; analyze >= 1.0 GB/s.

    attnx extract /work/shared/data/ud_english_ewt/train/sentences.txt -o benchmarks/_work/ewt_train.zarr
    python benchmarks/bench_read_path.py --store benchmarks/_work/ewt_train.zarr --rounds 3
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attnx.benchkit import load1, machine, spread, write_result  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], object], gb: float) -> dict:
    c0, t0 = _cpu(), time.perf_counter()
    fn()
    t, c = time.perf_counter() - t0, _cpu() - c0
    return {"s": t, "gb_per_s": gb / t, "core_s_per_gb": c / gb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "read_path.json"))
    args = ap.parse_args()

    import numcodecs.blosc as blosc
    from zarr.core.sync import sync

    import attnx
    from attnx.analysis import AnalyzeParams, analyze_store

    store = attnx.open_store(args.store)
    reader = store._reads.chunk_readers[store.payload_kind.array]
    if reader is None or reader.compressor != "blosc":
        raise SystemExit(f"{args.store}: the payload is not blosc-compressed; this benchmark compares to blosc")
    n = store.commit.attn
    gb = n * store._attn.dtype.itemsize / 1e9
    raws = sync(reader.fetch(0, n))  # the ceiling's input: every payload chunk object, in memory
    stored_gb = sum(len(r) for r in raws) / 1e9

    def numcodecs(threads: int) -> None:
        parts = [raws[k::threads] for k in range(threads)]

        def work(part: list) -> None:
            dest = np.empty(reader.chunk_nbytes, np.uint8)
            for raw in part:
                blosc.decompress(raw[:-4], dest)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, parts))

    def blocks(threads: int, zarr_path: bool = False, check_maps: bool = True) -> None:
        st = attnx.open_store(args.store)
        if zarr_path:
            st._reads.chunk_readers = dict.fromkeys(st._reads.chunk_readers)
        for _ in st.blocks(threads=threads, reuse=True, check_maps=check_maps):
            pass

    params = AnalyzeParams(only=("features", "patterns"))
    modes: dict[str, Callable[[], object]] = {
        "numcodecs_1": lambda: numcodecs(1), "numcodecs_2": lambda: numcodecs(2),
        "attnx_1": lambda: blocks(1), "attnx_2": lambda: blocks(2),
        "attnx_1_unchecked": lambda: blocks(1, check_maps=False),
        "attnx_2_unchecked": lambda: blocks(2, check_maps=False),
        "zarr_path_1": lambda: blocks(1, zarr_path=True),
        "analyze": lambda: analyze_store(attnx.open_store(args.store), params),
    }
    analyze_store(store, params)  # warm-up: kernels compiled or loaded, chunk files in the page cache
    runs: dict[str, list[dict]] = {k: [] for k in modes}
    load = [load1()]
    for _ in range(args.rounds):
        for name, fn in modes.items():
            runs[name].append(timed(fn, gb))
        load.append(load1())

    summary = {name: {key: spread([r[key] for r in rs]) for key in ("gb_per_s", "core_s_per_gb")}
               for name, rs in runs.items()}
    # per round: attnx's GB/s as a share of the ceiling at the same thread count
    share = {t: spread([a["gb_per_s"] / c["gb_per_s"] for a, c in zip(runs[f"attnx_{t}"], runs[f"numcodecs_{t}"],
                                                                     strict=True)]) for t in (1, 2)}
    best_attnx_cpu = min(summary["attnx_1"]["core_s_per_gb"]["median"], summary["attnx_2"]["core_s_per_gb"]["median"])
    # decoding proper: the reader without its map-value check (analyze checks the values in its feature kernel)
    best_decode_cpu = min(summary[f"attnx_{t}_unchecked"]["core_s_per_gb"]["median"] for t in (1, 2))
    share_unchecked = {t: spread([a["gb_per_s"] / c["gb_per_s"] for a, c in zip(
        runs[f"attnx_{t}_unchecked"], runs[f"numcodecs_{t}"], strict=True)]) for t in (1, 2)}
    result = {
        "store": args.store, "records": len(store), "dtype": store.dtype, "codec": store.attrs.get("codec"),
        "gb": gb, "stored_gb": stored_gb, "chunks": len(raws), "chunk_mb": reader.chunk_nbytes / 1e6,
        "rounds": args.rounds, "runs": runs, "summary": summary, "attnx_share_of_ceiling": share,
        "attnx_unchecked_share_of_ceiling": share_unchecked,
        "targets": {
            "decode_core_s_per_gb_le_0.5": best_decode_cpu <= 0.5,
            "decode_share_ge_0.8": max(share_unchecked[1]["median"], share_unchecked[2]["median"]) >= 0.8,
            "read_with_value_check_core_s_per_gb_le_0.5": best_attnx_cpu <= 0.5,
            "analyze_gb_per_s_ge_1.0": summary["analyze"]["gb_per_s"]["median"] >= 1.0,
        },
        "load_1min": load, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_result(args.out, result)
    print(f"{args.store}: {len(store):,} records, {gb:.2f} GB {store.dtype} ({stored_gb:.2f} GB compressed, "
          f"{len(raws)} chunks of {reader.chunk_nbytes / 1e6:.1f} MB); {args.rounds} rounds, load "
          f"{min(load):.1f}-{max(load):.1f}; median [min..max]")
    print(f"  {'mode':12s} {'GB/s':>20s} {'core-s/GB':>20s}")
    for name, s in summary.items():
        cells = [f"{s[k]['median']:.2f} [{s[k]['min']:.2f}..{s[k]['max']:.2f}]" for k in ("gb_per_s", "core_s_per_gb")]
        print(f"  {name:12s} {cells[0]:>20s} {cells[1]:>20s}")
    for t, v in share.items():
        print(f"  attnx / numcodecs, {t} thread(s), per round: {v['median']:.0%} [{v['min']:.0%}..{v['max']:.0%}]")
    print(f"  targets: {result['targets']}")


if __name__ == "__main__":
    main()
