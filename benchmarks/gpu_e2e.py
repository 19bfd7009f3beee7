"""A store written on CUDA in fp16 against float32 CPU maps of the same sentences, record by record.

The CUDA run keeps a subset of layers and heads under a small batch budget, so many small batches pass through
the pinned host copies and the store writer holds their maps across batches (the case issue 21's ring got
wrong). The reference is attnx on the CPU in float32, stored as float32. Every record's tokens and lengths must
match, and every stored probability must lie within ``--bound`` (fp16 compute + float16 storage) of the
reference. Writes ``e2e.json``. ``--cpu-dry-run``: the same steps with the "device" run on the CPU in float32.

    PYTHONPATH=/tmp/site:gpu_bundle/shim:src python benchmarks/gpu_e2e.py --sentences gpu_bundle/sentences.txt
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from gpu_common import check_covered, read_sentences, write_json

import attnx
from attnx.config import load_config
from attnx.engine.extract import ExtractOptions, extract
from attnx.engine.model import load_counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", required=True, help="one sentence per line")
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--layers", default="1,4")
    ap.add_argument("--heads", default="0,5,11")
    ap.add_argument("--budget-bytes", type=int, default=2_000_000, help="attention bytes per batch of the CUDA run")
    ap.add_argument("--bound", type=float, default=2e-3)
    ap.add_argument("--cpu-dry-run", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="directory for e2e.json [$OUT]")
    args = ap.parse_args()
    if args.cpu_dry_run:
        device, compute = "cpu", "float32"
    elif not torch.cuda.is_available():
        print("gpu_e2e: CUDA is not available (use --cpu-dry-run to test the plumbing)", file=sys.stderr)
        return 2
    else:
        device, compute = "cuda", "float16"
        torch.backends.cuda.matmul.allow_tf32 = False
    texts = read_sentences(args.sentences, args.limit)
    kept = check_covered(args.model, _tokenizer(), texts)
    work = Path(tempfile.mkdtemp(prefix="attnx-e2e-"))
    src = work / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    layers = tuple(int(x) for x in args.layers.split(","))
    heads = tuple(int(x) for x in args.heads.split(","))
    cfg = load_config(precision_check_records=0)  # precision is gpu_parity's job; here every record is compared
    common = {"input": str(src), "model": args.model, "layers": layers, "heads": heads, "backend": "torch"}
    t0 = time.perf_counter()
    on_device = extract(
        ExtractOptions(output=str(work / "device.zarr"), device=device, compute_dtype=compute, dtype="float16",
                       budget_bytes=args.budget_bytes, **common),
        config=cfg,
    )
    reference = extract(
        ExtractOptions(output=str(work / "cpu.zarr"), device="cpu", compute_dtype="float32", dtype="float32", **common),
        config=cfg,
    )
    a, b = attnx.open_store(work / "device.zarr"), attnx.open_store(work / "cpu.zarr")
    attnx.verify(work / "device.zarr")
    worst, total, count, worst_record = 0.0, 0.0, 0, -1
    for i in range(len(a)):
        if a.tokens(i) != b.tokens(i):
            raise SystemExit(f"gpu_e2e: record {i}: tokens differ between the device store and the CPU reference")
        diff = np.abs(a.attention(i).astype(np.float64) - b.attention(i))
        if diff.max() > worst:
            worst, worst_record = float(diff.max()), i
        total += float(diff.sum())
        count += diff.size
    passed = len(a) == len(b) == len(texts) and worst <= args.bound
    result = {
        "model": args.model, "device": str(on_device.device), "compute_dtype": compute, "stored_dtype": "float16",
        "reference": "attnx on cpu, float32 compute, float32 stored", "records": len(a), "layers": list(layers),
        "heads": list(heads), "budget_bytes": args.budget_bytes, "batches": on_device.batches,
        "reference_batches": reference.batches, "probabilities": count, "max_abs_error": worst,
        "worst_record": worst_record, "mean_abs_error": total / max(count, 1), "bound": args.bound, "passed": passed,
        "minilm_rows_kept": kept, "model_loads": sum(load_counts().values()),
        "seconds": time.perf_counter() - t0, "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
    }
    write_json(args.out, "e2e.json", result)
    print(f"e2e {args.model} {compute} on {device} -> float16 store, layers {args.layers} heads {args.heads}, "
          f"{on_device.batches} batches: max abs {worst:.3e} vs float32 CPU maps (record {worst_record}; mean "
          f"{result['mean_abs_error']:.2e}; {count:,} probabilities of {len(a)} records) bound {args.bound:g}: "
          f"{'PASS' if passed else 'FAIL'}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1


def _tokenizer() -> object:
    from transformers import AutoTokenizer

    from attnx.engine.model import minilm_path

    return AutoTokenizer.from_pretrained(str(minilm_path()))


if __name__ == "__main__":
    sys.exit(main())
