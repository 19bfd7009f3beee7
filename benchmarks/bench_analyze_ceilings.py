"""``analyze --only features,patterns`` end to end against its two ceilings, measured in the same run.

* decode ceiling: reading every block of the store (Icechunk + codec + checksum), on 1 and on 2 reader threads;
* kernel ceiling: the same analysis on blocks already in memory (numba features + pattern labels);
* end to end: ``analyze_store`` as the command runs it (reader threads and kernels together).

Rounds are interleaved (read1, read2, kernels, analyze per round), after one warm-up that compiles the kernels.
GB/s are of stored attention. On a 2-core machine decoding and kernels compete for the same cores, so
end to end is bounded by about 1 / (1/decode + 1/kernels) as well.

    python benchmarks/bench_analyze_ceilings.py --store STORE --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "analyze_ceilings.json"))
    args = ap.parse_args()

    import attnx
    import attnx.store.reader as reader
    from attnx.analysis import AnalyzeParams, analyze_store

    store = attnx.open_store(args.store)
    gb = store.commit.attn * store._attn.dtype.itemsize / 1e9
    in_memory = list(store.blocks(threads=1))
    original = reader.AttentionStore.blocks

    def read(threads: int) -> float:
        t = time.perf_counter()
        for _ in store.blocks(threads=threads):
            pass
        return gb / (time.perf_counter() - t)

    def analyze(from_memory: bool) -> float:
        if from_memory:
            reader.AttentionStore.blocks = lambda self, *a, **k: iter(in_memory)
        try:
            t = time.perf_counter()
            analyze_store(store, AnalyzeParams(only=("features", "patterns")))
            return gb / (time.perf_counter() - t)
        finally:
            reader.AttentionStore.blocks = original

    analyze(True)  # warm-up: numba compiles (or loads) the kernels
    runs: dict[str, list[float]] = {"decode_1_thread": [], "decode_2_threads": [], "kernels": [], "end_to_end": []}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        runs["decode_1_thread"].append(read(1))
        runs["decode_2_threads"].append(read(2))
        runs["kernels"].append(analyze(True))
        runs["end_to_end"].append(analyze(False))
        load.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in runs.items()}
    lower = min(med["decode_2_threads"], med["kernels"])
    serial = 1 / (1 / med["decode_2_threads"] + 1 / med["kernels"])
    result = {"store": args.store, "gb": gb, "records": len(store), "dtype": store.dtype, "gb_per_s": runs,
              "median": med, "fraction_of_lower_ceiling": med["end_to_end"] / lower,
              "fraction_of_shared_core_bound": med["end_to_end"] / serial, "load_1min": load,
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{args.store}: {len(store)} records, {gb:.2f} GB {store.dtype}; {args.repeat} rounds, "
          f"load {min(load):.1f}-{max(load):.1f}; GB/s median [min..max]")
    for k, v in runs.items():
        print(f"  {k:17s} {med[k]:.2f} [{min(v):.2f}..{max(v):.2f}]")
    print(f"  end to end = {result['fraction_of_lower_ceiling']:.0%} of the lower ceiling, "
          f"{result['fraction_of_shared_core_bound']:.0%} of 1/(1/decode + 1/kernels)")


if __name__ == "__main__":
    main()
