"""``analyze --only features,patterns`` end to end against its two ceilings, measured in the same run.

* decode ceiling: reading every block of the store (Icechunk + codec + checksum + token arrays) as ``analyze``
  reads them (``blocks(reuse=True)``), on 1 and on 2 reader threads (the multi-threaded ceiling is the better
  of the two in each round);
* kernel ceiling: the same analysis on blocks already in memory (numba features + pattern labels);
* end to end: ``analyze_store`` as the command runs it (reader threads and kernels together).

Rounds are interleaved (read1, read2, kernels, analyze per round), after one warm-up that compiles the kernels.
GB/s are of stored attention. Each run gives two rates: the whole run, and the steady state (from the first
block handed over to the end, so the pipeline's start-up - the first block's decode, with nothing to overlap -
is kept apart); and the CPU time it used (core-seconds per GB, user + system, all threads). On a 2-core machine
decoding and the kernels share the cores: end to end cannot beat cores / (decode + kernel core-seconds per GB).

    attnx extract /work/shared/data/ud_english_ewt/train/sentences.txt -o /tmp/ewt.zarr   # the measured store
    python benchmarks/bench_analyze_ceilings.py --store /tmp/ewt.zarr --repeat 5
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attnx.benchkit import load1, machine, spread, write_result  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Timed:
    """Times one run: whole, steady state (after the first block), CPU seconds."""

    def __init__(self, gb: float, first_gb: float) -> None:
        self.gb, self.first_gb = gb, first_gb
        self.t0 = self.c0 = self.t_first = 0.0

    def __enter__(self) -> Timed:
        self.t_first = 0.0
        self.c0, self.t0 = _cpu(), time.perf_counter()
        return self

    def first_block(self) -> None:
        if not self.t_first:
            self.t_first = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.t1, self.c1 = time.perf_counter(), _cpu()

    def result(self) -> dict:
        return {"gb_per_s": self.gb / (self.t1 - self.t0),
                "steady_gb_per_s": (self.gb - self.first_gb) / (self.t1 - self.t_first),
                "core_s_per_gb": (self.c1 - self.c0) / self.gb,
                "startup_s": self.t_first - self.t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "analyze_ceilings.json"))
    args = ap.parse_args()

    import attnx
    import attnx.store.reader as reader
    from attnx.analysis import AnalyzeParams, analyze_store

    store = attnx.open_store(args.store)
    itemsize = store._attn.dtype.itemsize
    gb = store.commit.attn * itemsize / 1e9
    in_memory = list(store.blocks(threads=1))
    first_gb = in_memory[0].attn.nbytes / 1e9
    original = reader.AttentionStore.blocks
    params = AnalyzeParams(only=("features", "patterns"))

    def read(threads: int) -> dict:
        with Timed(gb, first_gb) as t:
            for _ in store.blocks(threads=threads, reuse=True):  # the read path analyze uses
                t.first_block()
        return t.result()

    def analyze(from_memory: bool) -> dict:
        t = Timed(gb, first_gb)

        def watched(self, *a, **k) -> Iterator:  # noqa: ANN001
            for blk in (iter(in_memory) if from_memory else original(self, *a, **k)):
                t.first_block()
                yield blk

        reader.AttentionStore.blocks = watched
        try:
            with t:
                analyze_store(store, params)
            return t.result()
        finally:
            reader.AttentionStore.blocks = original

    analyze(True)  # warm-up: numba compiles (or loads) the kernels
    modes: dict[str, Callable[[], dict]] = {
        "decode_1_thread": lambda: read(1), "decode_2_threads": lambda: read(2),
        "kernels": lambda: analyze(True), "end_to_end": lambda: analyze(False)}
    runs: dict[str, list[dict]] = {k: [] for k in modes}
    fractions: dict[str, list[float]] = {"whole": [], "steady": []}
    load = [load1()]
    for _ in range(args.repeat):
        for name, fn in modes.items():
            runs[name].append(fn())
        load.append(load1())
        for kind, key in (("whole", "gb_per_s"), ("steady", "steady_gb_per_s")):
            r = {k: v[-1][key] for k, v in runs.items()}
            decode = max(r["decode_1_thread"], r["decode_2_threads"])
            fractions[kind].append(r["end_to_end"] / min(decode, r["kernels"]))

    def stat(name: str, key: str) -> dict:
        return spread([r[key] for r in runs[name]])

    summary = {name: {key: stat(name, key) for key in ("gb_per_s", "steady_gb_per_s", "core_s_per_gb", "startup_s")}
               for name in modes}
    decode_cpu = min(summary["decode_1_thread"]["core_s_per_gb"]["median"],
                     summary["decode_2_threads"]["core_s_per_gb"]["median"])
    cores = len(os.sched_getaffinity(0))
    result = {
        "store": args.store, "gb": gb, "records": len(store), "dtype": store.dtype, "codec": store.attrs.get("codec"),
        "block_mb": 64, "blocks": len(in_memory), "runs": runs, "summary": summary,
        "fraction_of_lower_ceiling": {k: spread(v) for k, v in fractions.items()},
        "cpu_bound_gb_per_s": cores / (decode_cpu + summary["kernels"]["core_s_per_gb"]["median"]),
        "load_1min": load, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_result(args.out, result)
    print(f"{args.store}: {len(store)} records, {gb:.2f} GB {store.dtype}, {len(in_memory)} blocks; {args.repeat} "
          f"rounds, load {min(load):.1f}-{max(load):.1f}; median [min..max]")
    print(f"  {'':17s} {'GB/s whole':>18s} {'GB/s steady':>18s} {'core-s/GB':>10s} {'start-up s':>10s}")
    for name, s in summary.items():
        cells = [f"{s[k]['median']:.2f} [{s[k]['min']:.2f}..{s[k]['max']:.2f}]"
                 for k in ("gb_per_s", "steady_gb_per_s")]
        print(f"  {name:17s} {cells[0]:>18s} {cells[1]:>18s} {s['core_s_per_gb']['median']:10.2f} "
              f"{s['startup_s']['median']:10.3f}")
    for kind, v in result["fraction_of_lower_ceiling"].items():
        print(f"  end to end / lower ceiling ({kind}, per round): {v['median']:.0%} [{v['min']:.0%}..{v['max']:.0%}]")
    print(f"  CPU bound: {cores} cores / (decode + kernel core-s per GB) = {result['cpu_bound_gb_per_s']:.2f} GB/s")


if __name__ == "__main__":
    main()
