"""Extraction throughput: naive transformers baseline vs attnx, interleaved rounds, same run, same machine.

    python benchmarks/bench_extract.py --models minilm --limit 600 --rounds 3
    python benchmarks/bench_extract.py --device cuda --models random-bert-base --limit 12544 --tag gpu

Each setting runs in a fresh process per round (start-up and warm-up timed apart from the steady state; see
``attnx.bench``). Prints the table (median [min..max] over rounds, the machine's load) and writes
``benchmarks/results/extract-TAG.json``; ``python benchmarks/make_results.py`` renders it into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from attnx.bench import ceilings_table, markdown_table, run_suite
from attnx.benchkit import fmt, write_result

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT.parent / "shared" / "data" / "ud_english_ewt" / "train" / "sentences.txt"


def parse_limits(spec: str) -> dict[str, int]:
    limits = {}
    for part in spec.split(","):
        key, _, value = part.rpartition("=")
        limits[key or "*"] = int(value)
    return limits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(EWT), help="one sentence per line [default: UD EWT train sentences]")
    ap.add_argument("--models", default="minilm")
    ap.add_argument("--limit", default="minilm=600,random-bert-base=100",
                    help="sentences per model, e.g. minilm=600,random-bert-base=100 (or one number for all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compute", default=None, help="attnx compute dtype (default: fp32 on CPU, fp16 on CUDA)")
    ap.add_argument("--extra-compute", default="", help="also run attnx with these compute dtypes, e.g. bfloat16")
    ap.add_argument("--dtypes", default="float16,uint8", help="stored dtypes to run")
    ap.add_argument("--backends", default="torch", help="attnx backends to run: torch,onnx")
    ap.add_argument("--rounds", type=int, default=3, help="repetitions of every setting, interleaved")
    ap.add_argument("--warmup", type=int, default=64, help="sentences each process warms up on (untimed rate)")
    ap.add_argument("--corpus-repeat", type=int, default=1, help="run on the input repeated N times over")
    ap.add_argument("--memory-repeat", type=int, default=0, help="also check RSS on the corpus repeated N times")
    ap.add_argument("--memory-base", type=int, default=300, help="sentences repeated for the memory check")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-limit", type=int, default=None, help="sentences for the baseline (default: same)")
    ap.add_argument("--stats-only", action="store_true", help="also run attnx extract --stats-only")
    ap.add_argument("--tag", default="cpu", help="result file suffix: extract-TAG.json")
    ap.add_argument("--json-out", default=str(ROOT / "benchmarks" / "results"), help="folder for extract-TAG.json")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds from now: start no round that would end later (the file is written every round)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="set in every measured process, e.g. ATTNX_PRECISION_CHECK_RECORDS=0 (repeatable)")
    args = ap.parse_args()
    if not Path(args.input).is_file():
        print(f"input {args.input} not found (../shared/data absent?)", file=sys.stderr)
        return 2
    dest = Path(args.json_out) / f"extract-{args.tag}.json"
    command = "python benchmarks/bench_extract.py " + " ".join(sys.argv[1:])
    out = run_suite(
        args.input,
        args.models.split(","),
        parse_limits(args.limit),
        device=args.device,
        compute=args.compute,
        extra_compute=[x for x in args.extra_compute.split(",") if x],
        dtypes=args.dtypes.split(","),
        backends=args.backends.split(","),
        rounds=args.rounds,
        corpus_repeat=args.corpus_repeat,
        warmup=args.warmup,
        memory_repeat=args.memory_repeat,
        memory_base=args.memory_base,
        skip_baseline=args.skip_baseline,
        baseline_limit=args.baseline_limit,
        stats_only=args.stats_only,
        log=lambda m: print(m, flush=True),
        partial=lambda r: write_result(dest, {**r, "command": command}),
        deadline=time.time() + args.deadline if args.deadline else None,
        env=dict(e.split("=", 1) for e in args.env),
    )
    out["command"] = command
    path = write_result(dest, out)
    print("\n" + markdown_table(out) + "\n\n" + ceilings_table(out))
    lo, hi = out["load_1min"]
    print(f"\ndisk write {fmt(out['disk_MBps'], 0)} MB/s; load {lo:.1f}-{hi:.1f}; {out['rounds']} rounds")
    if out["memory"]:
        print(f"memory: {json.dumps(out['memory'])}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
