"""A/B speed of the head-similarity kernels (cosine, JS) of two attnx source trees on the same store.

Each measurement is a fresh process running one tree's ``head_similarity`` on the store's first block: one
warm-up call (numba compilation or cache load, not timed), then ``--calls`` timed calls per metric on the first
``--cosine-records`` / ``--js-records`` records. A and B alternate, ``--rounds`` times. Reports MB/s of stored
attention (median [min..max] over rounds of each process's median call) and the ratio B / A.

    git worktree add /tmp/attnx-before <commit>
    python benchmarks/bench_similarity_ab.py --a /tmp/attnx-before/src --store /tmp/ewt_f16.zarr \
        --out benchmarks/results/similarity_f64_ab.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attnx.benchkit import interleave, load_range, machine, run_in_tree, spread, write_result  # noqa: E402

SNIPPET = r"""
import json, statistics, sys, time
import numpy as np
import attnx
from attnx.kernels.common import kernel_input
from attnx.kernels.similarity import head_similarity

store, calls, counts = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
blk = next(iter(attnx.open_store(store).blocks(max_bytes=64 << 20)))
inp, n_maps = kernel_input(blk.attn, blk.scale), blk.n_layers * blk.n_heads
out = {"source": attnx.__file__}
for metric, n in counts.items():
    off, ln = blk.attn_offsets[:n], blk.lengths[:n]
    head_similarity(inp, off, ln, n_maps, metric)  # compile or load from the numba cache
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        head_similarity(inp, off, ln, n_maps, metric)
        times.append(time.perf_counter() - t)
    nbytes = int((n_maps * ln.astype(np.int64) ** 2).sum()) * blk.attn.itemsize
    out[metric] = {"records": int(len(ln)), "mb": nbytes / 1e6, "mb_s": nbytes / statistics.median(times) / 1e6}
print(json.dumps(out))
"""


def measure(src: str, args: argparse.Namespace) -> dict:
    counts = json.dumps({"cosine": args.cosine_records, "js": args.js_records})
    return run_in_tree(src, SNIPPET, [args.store, str(args.calls), counts], "similarity")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="src folder of tree A (the baseline)")
    ap.add_argument("--b", default=str(ROOT / "src"), help="src folder of tree B")
    ap.add_argument("--store", required=True, help="an attnx store; its first block is used")
    ap.add_argument("--cosine-records", type=int, default=400)
    ap.add_argument("--js-records", type=int, default=40)
    ap.add_argument("--calls", type=int, default=5, help="timed calls per metric and process")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "similarity_ab.json")
    args = ap.parse_args(argv)

    reps = interleave({"A": lambda: measure(args.a, args), "B": lambda: measure(args.b, args)}, args.rounds)
    command = " ".join(["python", f"benchmarks/{Path(__file__).name}", *(sys.argv[1:] if argv is None else argv)])
    result: dict = {"command": command,
                    "machine": machine(), "load": load_range(reps), "a": args.a, "b": args.b, "store": args.store,
                    "calls": args.calls, "rounds": args.rounds, "metrics": {}}
    print("| metric | records | A MB/s | B MB/s | B / A |\n|---|---:|---:|---:|---:|")
    for metric in ("cosine", "js"):
        a = [r[metric]["mb_s"] for r in reps["A"]]
        b = [r[metric]["mb_s"] for r in reps["B"]]
        ratio = statistics.median(b) / statistics.median(a)
        result["metrics"][metric] = {"records": reps["A"][0][metric]["records"], "A": spread(a), "B": spread(b),
                                     "ratio": ratio}
        print(f"| {metric} | {result['metrics'][metric]['records']} | {statistics.median(a):.1f} "
              f"[{min(a):.1f}..{max(a):.1f}] | {statistics.median(b):.1f} [{min(b):.1f}..{max(b):.1f}] | {ratio:.3f} |")
    print(f"-> {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
