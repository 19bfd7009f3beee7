"""fp16 attention on CUDA against float32: max abs error per model, must be <= ``--bound`` (default 2e-3).

Run by benchmarks/gpu_check.sh on the GPU machine: the real MiniLM (the bundle's fp16 copy) and BERT-base shapes
(random weights). ``--cpu-dry-run`` runs the same plumbing on the CPU (float32 against float32) so it can be
checked without a GPU. ``parity.json`` is written after every model; rows of other models already in it are kept
(gpu_check.sh runs one process per model, so that no process loads a model more than twice). Example:

    PYTHONPATH=/tmp/site:gpu_bundle/shim:src python benchmarks/gpu_parity.py --sentences gpu_bundle/sentences.txt
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from gpu_common import check_covered, read_json, read_sentences, write_json

from attnx.engine.model import load_counts
from attnx.engine.precision import measure_precision


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", required=True, help="one sentence per line")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--bound", type=float, default=2e-3)
    ap.add_argument("--models", nargs="+", default=["minilm", "random-bert-base"])
    ap.add_argument("--cpu-dry-run", action="store_true", help="CPU, float32 vs float32: exercise the plumbing")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="directory for parity.json [$OUT]")
    args = ap.parse_args()
    if args.cpu_dry_run:
        device, dtype = "cpu", "float32"
    else:
        if not torch.cuda.is_available():
            print("gpu_parity: CUDA is not available (use --cpu-dry-run to test the plumbing)", file=sys.stderr)
            return 2
        torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 reference
        torch.backends.cudnn.allow_tf32 = False
        device, dtype = "cuda", "float16"
    texts = read_sentences(args.sentences, args.limit)
    rows, ok = [r for r in read_json(args.out, "parity.json", []) if r["model"] not in args.models], True
    for model in args.models:
        from transformers import AutoTokenizer

        from attnx.engine.model import minilm_path

        kept = check_covered(model, AutoTokenizer.from_pretrained(str(minilm_path())), texts)
        r = measure_precision(model, dtype, texts, device=device, reference_device=device, limit=args.limit,
                              batch_size=32, max_length=512)
        passed = r.max_abs_error <= args.bound
        ok &= passed
        rows.append({**r.to_attrs(), "bound": args.bound, "passed": passed, "minilm_rows_kept": kept,
                     "model_loads_so_far": sum(load_counts().values())})
        write_json(args.out, "parity.json", rows)
        print(f"parity {model:18s} {dtype} on {device} vs float32: max abs {r.max_abs_error:.3e} "
              f"(mean {r.mean_abs_error:.2e}, p99.9 {r.p999_abs_error:.2e}, {r.records} sentences, "
              f"{r.elements:,} probabilities, {r.seconds:.1f} s with both loads) bound {args.bound:g}: "
              f"{'PASS' if passed else 'FAIL'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
