"""fp16 attention on CUDA against float32: max abs error per model, must be <= ``--bound`` (default 2e-3).

Run by benchmarks/gpu_check.sh on the GPU machine; ``--cpu-dry-run`` runs the same plumbing on the CPU
(float32 against float32, tiny models) so it can be checked without a GPU. Example:

    PYTHONPATH=/tmp/site:gpu_bundle/shim:src python benchmarks/gpu_parity.py --sentences gpu_bundle/sentences.txt
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

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
    with open(args.sentences, encoding="utf-8") as fh:
        texts = [s.strip() for s in fh if s.strip()][: args.limit]
    rows, ok = [], True
    for model in args.models:
        r = measure_precision(model, dtype, texts, device=device, reference_device=device, limit=args.limit,
                              batch_size=32, max_length=512)
        passed = r.max_abs_error <= args.bound
        ok &= passed
        rows.append({**r.to_attrs(), "bound": args.bound, "passed": passed})
        print(f"parity {model:18s} {dtype} on {device} vs float32: max abs {r.max_abs_error:.3e} "
              f"(mean {r.mean_abs_error:.2e}, p99.9 {r.p999_abs_error:.2e}, {r.records} sentences, "
              f"{r.elements:,} probabilities) bound {args.bound:g}: {'PASS' if passed else 'FAIL'}", flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "parity.json"), "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
