"""Throughput of pattern classification over a store: the numba feature pass + the classifier, per block.

Times, on blocks already read into memory (compute only, as ``bench_kernels.py`` does), the feature kernel
alone and the feature kernel + pattern labels (what ``attnx analyze --only patterns`` runs per block),
median of ``--repeats`` runs after a warm-up, in MB/s of *stored* attention (float16 = 2 bytes/value), and
per CPU-second of the process (all threads; less sensitive than wall time to other jobs on a shared machine).
Also runs against an older attnx (rule classifier, ``block_patterns(sums, block, thresholds)``) so the
same script times the baseline: ``PYTHONPATH=/path/to/old/src python benchmarks/bench_patterns.py``.
Prints one JSON line (with the 1-minute load average, since shared machines are noisy).

    python benchmarks/bench_patterns.py --store /tmp/v2work/sample.zarr --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numba

import attnx
from attnx.analysis.driver import block_maps, block_patterns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    try:
        from attnx.kernels.pattern_model import PatternModel

        model, kind = PatternModel.load(), "learned"
    except ImportError:  # an attnx before the learned classifier
        from attnx.kernels.patterns import Thresholds

        model, kind = Thresholds.load(), "rules"
    st = attnx.open_store(args.store)
    L, H = st.n_layers, st.n_heads
    blocks = list(st.blocks(64 << 20))
    nbytes = sum(int(b.attn.nbytes) for b in blocks)
    maps = sum(len(b) for b in blocks) * L * H

    def feat() -> None:
        for b in blocks:
            block_maps(b, L, H)

    def feat_pat() -> None:
        for b in blocks:
            block_patterns(block_maps(b, L, H), b, model)

    out = {"classifier": kind, "attnx": os.path.dirname(attnx.__file__), "store": args.store, "dtype": st.dtype,
           "records": len(st), "mb": nbytes / 1e6, "maps": maps, "threads": numba.get_num_threads()}
    for name, fn in (("features", feat), ("features+patterns", feat_pat)):
        fn()  # warm-up (JIT, caches)
        ts, cpu = [], []
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            fn()
            ts.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        out[f"{name}_mb_s"] = nbytes / statistics.median(ts) / 1e6
        out[f"{name}_mb_s_spread"] = [nbytes / max(ts) / 1e6, nbytes / min(ts) / 1e6]
        out[f"{name}_mb_per_cpu_s"] = nbytes / statistics.median(cpu) / 1e6
        out[f"{name}_mb_s_best"] = nbytes / min(ts) / 1e6  # least disturbed run on a shared machine
    out["load_avg_1m"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
