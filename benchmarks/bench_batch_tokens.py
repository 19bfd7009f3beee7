"""The CPU batch size: extraction speed per cap on padded tokens per batch (``Config.cpu_max_batch_tokens``).

``attnx extract INPUT -o STORE`` with ``ATTNX_CPU_MAX_BATCH_TOKENS`` = each value, everything else the defaults
(backend ``auto``), each run a fresh process; the values interleaved in every round (forward, then backward).
Reported per value: the run's own seconds and sentences/s from ``--json`` (model loading excluded), the whole
process's seconds, the batches it made, and per round the speed relative to the largest value.

    python benchmarks/bench_batch_tokens.py --work /tmp/attnx-bt --limit 4541 --rounds 3
    python benchmarks/bench_batch_tokens.py --work /tmp/attnx-bt --limit 500 --model random-bert-base \\
        --values 1024,2048,8192 --out benchmarks/results/batch_tokens_bert_base.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_workers import make_input, run, work_folder  # noqa: E402 - the same inputs and the same fresh-process run

from attnx.benchkit import fmt, load1, machine, spread, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="folder for the input and the stores (outside the repository)")
    ap.add_argument("--limit", type=int, default=4541, help="sentences (UD EWT dev, then train; beyond: generated)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--values", default="512,1024,2048,4096,8192")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batch_tokens.json"))
    args = ap.parse_args(argv)
    work = work_folder(ap, args.work)
    src, what = make_input(work, args.limit)
    values = [int(v) for v in args.values.split(",")]
    runs: dict[int, list[dict]] = {v: [] for v in values}
    load_first = load1()
    for r in range(args.rounds):
        for v in values[:: 1 if r % 2 == 0 else -1]:
            x = run(
                src, work / "store.zarr", 1, extra=("-m", args.model), env_extra={"ATTNX_CPU_MAX_BATCH_TOKENS": str(v)}
            )
            runs[v].append(x)
            print(
                f"[{time.strftime('%H:%M:%S')}] round {r + 1} {v}: {x['run_s']:.2f} s in the run, "
                f"{x['wall_s']:.1f} s whole, {x['batches']} batches, {x['backend']}",
                flush=True,
            )
    top = max(values)
    per_value = {
        str(v): {
            "run_s": spread([x["run_s"] for x in xs]),
            "wall_s": spread([x["wall_s"] for x in xs]),
            "sentences_per_s": spread([x["sentences_per_s"] for x in xs]),
            "batches": xs[0]["batches"],
            "backend": xs[0]["backend"],
            # per round: this value's sentences/s over the largest value's
            "speed_vs_largest": spread(
                [a["sentences_per_s"] / b["sentences_per_s"] for a, b in zip(xs, runs[top], strict=True)]
            ),
        }
        for v, xs in runs.items()
    }
    result = {
        "part": "batch_tokens",
        "model": args.model,
        "input": what,
        "sentences": args.limit,
        "rounds": args.rounds,
        "values": values,
        "largest": top,
        "per_value": per_value,
        "runs": {str(v): xs for v, xs in runs.items()},
        "load_1min": {"first": load_first, "last": load1()},
        "machine": machine(),
        "command": "python benchmarks/bench_batch_tokens.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_result(args.out, result)
    for v in values:
        s = per_value[str(v)]
        print(
            f"  {v:>6}: {fmt(s['sentences_per_s'])} sent/s in the run, whole {fmt(s['wall_s'])} s, "
            f"{s['batches']} batches, x{fmt(s['speed_vs_largest'], 2)} of {top}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
