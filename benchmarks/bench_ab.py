"""A/B extraction speed of two attnx source trees (e.g. before and after a change) on the same input.

Runs ``attnx extract --json`` from each tree in its own process, alternating A and B, ``--repeat`` times,
and reports the median and range of the summary's sentences/s (model loading excluded) and the ratio B/A.

    git worktree add /tmp/attnx-before <commit>
    python benchmarks/bench_ab.py --a /tmp/attnx-before/src --b src \
        --input ../shared/data/ud_english_ewt/dev/sentences.txt
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(src: str, input_path: str, args: argparse.Namespace) -> dict:
    work = tempfile.mkdtemp(prefix="attnx-ab-")
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-c",
        "from attnx.cli.main import main; main()",
        "extract",
        input_path,
        "-o",
        f"{work}/s.zarr",
        "--json",
        "-q",
        "--model",
        args.model,
        "--dtype",
        args.dtype,
    ]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{src}: extract failed:\n{exc.stderr[-2000:]}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="src folder of tree A (the baseline)")
    ap.add_argument("--b", default=str(ROOT / "src"), help="src folder of tree B")
    ap.add_argument("--input", required=True)
    ap.add_argument("--limit", type=int, default=1000, help="first N lines of the input")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ab.json"))
    args = ap.parse_args()
    with open(args.input, encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(args.limit)]
    tmp = Path(tempfile.mkdtemp(prefix="attnx-ab-in-")) / "input.txt"
    tmp.write_text("".join(lines), encoding="utf-8")
    rates: dict[str, list[float]] = {"a": [], "b": []}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        for key in ("a", "b"):
            rates[key].append(run(getattr(args, key), str(tmp), args)["sentences_per_s"])
        load.append(os.getloadavg()[0])
    shutil.rmtree(tmp.parent, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "a": args.a,
        "b": args.b,
        "input": args.input,
        "limit": args.limit,
        "model": args.model,
        "dtype": args.dtype,
        "sentences_per_s": rates,
        "median": med,
        "ratio_b_over_a": med["b"] / med["a"],
        "load_1min": load,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for k in ("a", "b"):
        print(f"{k}: {getattr(args, k)}: median {med[k]:.1f} sent/s [{min(rates[k]):.1f}..{max(rates[k]):.1f}]")
    print(
        f"B/A = {result['ratio_b_over_a']:.2f} ({args.repeat} interleaved rounds, load {min(load):.1f}-{max(load):.1f})"
    )


if __name__ == "__main__":
    main()
