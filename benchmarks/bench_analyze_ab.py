"""A/B speed of ``analyze`` (read + decode + kernels) of two attnx source trees on the same store.

Made to measure the per-block value checks of the reader (``attnx.store.checks``), which must keep analyze
within 5% of its speed before them. Each measurement is a fresh process of one tree: one untimed pass over the
store (numba compilation or cache load, page cache), then ``--passes`` timed passes of ``analyze_store`` with
``--only``; the process reports its median pass. A and B alternate (after one untimed warm-up process each),
``--rounds`` times. Reports MB/s of stored attention (median [min..max] over rounds) and B / A; start-up is
outside every timed pass. The result file records the machine (``lscpu`` flags) and the load.

    git archive <commit> src | tar -x -C /tmp/attnx-before
    python benchmarks/bench_analyze_ab.py --a /tmp/attnx-before/src --store corpus.zarr \
        --out benchmarks/results/analyze_checks_ab.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attnx.benchkit import fmt, interleave, load_range, machine, run_in_tree, spread, write_result  # noqa: E402

SNIPPET = r"""
import json, statistics, sys, time
import attnx
from attnx.analysis import AnalyzeParams, analyze_store  # the public names: every tree compared has them

path, passes, only = sys.argv[1], int(sys.argv[2]), tuple(sys.argv[3].split(","))
store = attnx.open_store(path)
params = AnalyzeParams(only=only)
analyze_store(store, params)  # compile or load kernels from the numba cache; warm the page cache
times, cpu = [], []
for _ in range(passes):
    t, c = time.perf_counter(), time.process_time()
    part = analyze_store(store, params)
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(json.dumps({"source": attnx.__file__, "records": part.records, "mb": part.attn_bytes / 1e6,
                  "mb_s": part.attn_bytes / statistics.median(times) / 1e6,
                  "core_s_per_gb": statistics.median(cpu) / (part.attn_bytes / 1e9)}))
"""


def measure(src: str, args: argparse.Namespace) -> dict:
    return run_in_tree(src, SNIPPET, [args.store, str(args.passes), args.only], "analyze")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="src folder of tree A (the baseline)")
    ap.add_argument("--b", default=str(ROOT / "src"), help="src folder of tree B")
    ap.add_argument("--store", required=True, help="an attnx store (maps)")
    ap.add_argument("--only", default="features,patterns,similarity", help="analyses, as analyze --only")
    ap.add_argument("--passes", type=int, default=3, help="timed passes per process")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "analyze_ab.json")
    args = ap.parse_args(argv)

    reps = interleave({"A": lambda: measure(args.a, args), "B": lambda: measure(args.b, args)}, args.rounds,
                      log=lambda s: print(s, file=sys.stderr))
    a = [r["mb_s"] for r in reps["A"]]
    b = [r["mb_s"] for r in reps["B"]]
    ratio = statistics.median(b) / statistics.median(a)
    paired = [y / x for x, y in zip(a, b, strict=True)]  # the two processes of one round ran back to back
    cpu_a = [r["core_s_per_gb"] for r in reps["A"] if "core_s_per_gb" in r]
    cpu_b = [r["core_s_per_gb"] for r in reps["B"] if "core_s_per_gb" in r]
    cpu = None
    if cpu_a and cpu_b:  # CPU time of every thread of the process per GB: the cost, less sensitive to load
        ratio_cpu = statistics.median(cpu_b) / statistics.median(cpu_a)
        cpu = {"A": spread(cpu_a), "B": spread(cpu_b), "ratio_b_over_a": ratio_cpu}
    command = " ".join(["python", f"benchmarks/{Path(__file__).name}", *(sys.argv[1:] if argv is None else argv)])
    result = {"command": command, "machine": machine(), "load": load_range(reps), "a": args.a, "b": args.b,
              "store": args.store, "only": args.only, "passes": args.passes, "rounds": args.rounds,
              "records": reps["A"][0]["records"], "mb": reps["A"][0]["mb"], "A": spread(a), "B": spread(b),
              "ratio": ratio, "ratio_per_round": spread(paired), "core_s_per_gb": cpu}
    print("| store MB | A MB/s | B MB/s | B / A |\n|---:|---:|---:|---:|")
    print(f"| {result['mb']:.0f} | {statistics.median(a):.1f} [{min(a):.1f}..{max(a):.1f}] | "
          f"{statistics.median(b):.1f} [{min(b):.1f}..{max(b):.1f}] | {ratio:.3f} |")
    print(f"B / A per round: {fmt(result['ratio_per_round'], 3)}")
    if cpu:
        print(f"core-s per GB: A {fmt(cpu['A'], 3)}, B {fmt(cpu['B'], 3)}, B / A {cpu['ratio_b_over_a']:.3f}")
    print(f"-> {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
