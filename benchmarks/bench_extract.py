"""Extraction throughput: naive transformers baseline vs attnx, same run, same machine.

    python benchmarks/bench_extract.py                      # MiniLM + random BERT-base on UD EWT sentences
    python benchmarks/bench_extract.py --device cuda --models random-bert-base --limit 20000

Prints a markdown table (sentences/s, tokens/s, bytes stored per sentence, peak RSS, ratios to the
baseline), the ceilings measured on the same machine, and writes benchmarks/results/extract*.json and
the table into benchmarks/RESULTS.md (between markers of its own).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from attnx.bench import run_suite

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
    ap.add_argument("--models", default="minilm,random-bert-base")
    ap.add_argument(
        "--limit",
        default="minilm=2000,random-bert-base=400",
        help="sentences per model, e.g. minilm=2000,random-bert-base=400 (or one number for all)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compute", default=None, help="attnx compute dtype (default: fp32 on CPU, fp16 on CUDA)")
    ap.add_argument("--extra-compute", default="", help="also run attnx with these compute dtypes, e.g. bfloat16")
    ap.add_argument("--dtypes", default="float16,uint8", help="stored dtypes to run")
    ap.add_argument("--backends", default="torch", help="attnx backends to run: torch,onnx")
    ap.add_argument(
        "--memory-repeat", type=int, default=10, help="rerun attnx on the corpus repeated N times (0: skip)"
    )
    ap.add_argument("--memory-base", type=int, default=300, help="sentences repeated for the memory check")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-limit", type=int, default=None, help="sentences for the baseline (default: same)")
    ap.add_argument("--repeat", type=int, default=1, help="run attnx and the forward pass on the input N times over")
    ap.add_argument("--stats-only", action="store_true", help="also run attnx extract --stats-only")
    ap.add_argument("--tag", default="cpu", help="results file suffix and RESULTS.md section name")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--json-out", default=str(ROOT / "benchmarks" / "results"), help="folder for extract-TAG.json")
    args = ap.parse_args()
    if not Path(args.input).is_file():
        print(f"input {args.input} not found (../shared/data absent?)", file=sys.stderr)
        return 2
    out = run_suite(
        args.input,
        args.models.split(","),
        parse_limits(args.limit),
        device=args.device,
        compute=args.compute,
        extra_compute=[x for x in args.extra_compute.split(",") if x],
        dtypes=args.dtypes.split(","),
        backends=args.backends.split(","),
        memory_repeat=args.memory_repeat,
        memory_base=args.memory_base,
        skip_baseline=args.skip_baseline,
        baseline_limit=args.baseline_limit,
        repeat=args.repeat,
        stats_only=args.stats_only,
        log=lambda m: print(m, flush=True),
    )
    print("\n" + out["table"])
    print(f"\nceilings: {json.dumps({k: round(v, 2) for k, v in out['ceilings'].items()})}")
    if out["memory"]:
        print(f"memory: {json.dumps(out['memory'])}")
    folder = Path(args.json_out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"extract-{args.tag}.json").write_text(json.dumps(out, indent=2))
    write_section(
        Path(args.results), args.tag, out["machine"], out["lengths"], out["table"], out["ceilings"], out["memory"]
    )
    return 0


def write_section(
    path: Path, tag: str, machine: dict, stats: dict, table: str, ceil: dict, memory: dict | None
) -> None:
    hw = machine.get("gpu") or f"{machine['cpu']}, {machine['cores']} cores"
    body = [
        f"## Extraction throughput ({tag}): {hw}",
        "",
        f"torch {machine['torch']}, transformers {machine['transformers']}, zarr {machine['zarr']}; corpus: UD EWT "
        f"sentences, {stats['n']} lines, wordpieces mean {stats['mean']:.1f} / median {stats['median']:.0f} / "
        f"p95 {stats['p95']:.0f} / max {stats['max']}. Produced by `python benchmarks/bench_extract.py`.",
        "",
        table,
        "",
        "Ceilings on the same machine: " + ", ".join(f"{k} {v:,.1f}" for k, v in ceil.items()) + ".",
    ]
    if memory:
        body.append(
            f"Memory (windows of {memory['window_records']} records in both runs): peak RSS "
            f"{memory['peak_rss_mb'][0]:.0f} MB on {memory['base_sentences']} sentences, "
            f"{memory['peak_rss_mb'][1]:.0f} MB on the same repeated to {memory['repeated_sentences']}; RSS at "
            f"10/25/50/75/100% of each run: {memory['rss_profile_mb'][0]} and {memory['rss_profile_mb'][1]} MB."
        )
    section = "\n".join(body)
    start, end = f"<!-- bench_extract:{tag} -->", f"<!-- /bench_extract:{tag} -->"
    text = path.read_text() if path.exists() else "# attnx benchmark results\n"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
