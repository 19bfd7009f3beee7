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

import numpy as np

from attnx.bench import ceilings, derive, length_stats, machine_info, markdown_table, run_in_subprocess, tempdir

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT.parent / "shared" / "data" / "ud_english_ewt" / "train" / "sentences.txt"


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
    ap.add_argument(
        "--memory-repeat", type=int, default=10, help="rerun attnx on the corpus repeated N times (0: skip)"
    )
    ap.add_argument("--memory-base", type=int, default=300, help="sentences repeated for the memory check")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--tag", default="cpu", help="results file suffix and RESULTS.md section name")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = ap.parse_args()
    if not Path(args.input).is_file():
        print(f"input {args.input} not found (../shared/data absent?)", file=sys.stderr)
        return 2
    limits = {}
    for part in args.limit.split(","):
        if "=" in part:
            k, v = part.split("=")
            limits[k] = int(v)
        else:
            limits["*"] = int(part)
    work = tempdir()
    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    rows: list[dict] = []

    def record(model: str, kind: str, label: str, **spec) -> dict:
        spec = {
            "kind": kind,
            "model": model,
            "input": args.input,
            "device": args.device,
            "workdir": str(work / model),
            "label": label,
            **spec,
        }
        Path(spec["workdir"]).mkdir(parents=True, exist_ok=True)
        row = derive({**run_in_subprocess(spec), "model": model, "kind": kind, "label": label})
        rows.append(row)
        print(
            f"  {model:18s} {label:28s} {row['sent_per_s']:9.1f} sent/s  {row['peak_rss_mb']:7.0f} MB RSS", flush=True
        )
        return row

    gpu = args.device.startswith("cuda")
    for model in args.models.split(","):
        limit = limits.get(model, limits.get("*", 1000))
        print(f"{model}: {limit} sentences", flush=True)
        if not args.skip_baseline:
            record(
                model, "baseline", "naive transformers (batch 32)", limit=limit, compute="float16" if gpu else "float32"
            )
        compute = args.compute or ("float16" if gpu else "float32")
        record(model, "forward", f"bare forward, sorted ({compute})", limit=limit, compute=compute)
        record(model, "attnx", f"attnx {compute} -> float16", limit=limit, compute=compute, dtype="float16")
        record(model, "attnx", f"attnx {compute} -> uint8", limit=limit, compute=compute, dtype="uint8")
        for extra in filter(None, args.extra_compute.split(",")):
            record(model, "attnx", f"attnx {extra} -> float16", limit=limit, compute=extra, dtype="float16")
    memory = None
    if args.memory_repeat:
        model = args.models.split(",")[0]
        one = record(
            model,
            "attnx",
            f"attnx, {args.memory_base} sentences",
            limit=args.memory_base,
            dtype="float16",
            workdir=str(work / "mem1"),
        )
        many = record(
            model,
            "attnx",
            f"attnx, same x{args.memory_repeat}",
            limit=args.memory_base,
            repeat=args.memory_repeat,
            dtype="float16",
            workdir=str(work / "mem10"),
        )
        memory = {
            "model": model,
            "base_sentences": one["sentences"],
            "repeated_sentences": many["sentences"],
            "peak_rss_mb": [one["peak_rss_mb"], many["peak_rss_mb"]],
        }
    sample_file = next((work / args.models.split(",")[0]).glob("sample-attnx*float16.npy"), None)
    sample = np.load(sample_file) if sample_file else np.zeros(1 << 20, np.float16)
    ceil = ceilings(sample, "blosc-lz4", work)
    stats = length_stats(args.input, max(limits.values()))
    table = markdown_table(rows)
    print("\n" + table)
    print(f"\nceilings: {json.dumps({k: round(v, 2) for k, v in ceil.items()})}")
    if memory:
        print(f"memory: {json.dumps(memory)}")
    out = {"machine": machine, "input": args.input, "lengths": stats, "rows": rows, "ceilings": ceil, "memory": memory}
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"extract-{args.tag}.json").write_text(json.dumps(out, indent=2))
    write_section(Path(args.results), args.tag, machine, stats, table, ceil, memory)
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
            f"Memory: peak RSS {memory['peak_rss_mb'][0]:.0f} MB on {memory['base_sentences']} sentences, "
            f"{memory['peak_rss_mb'][1]:.0f} MB on the same repeated to {memory['repeated_sentences']}."
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
