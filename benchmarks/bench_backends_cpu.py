"""CPU backends in one run: torch fp32 / bf16, onnxruntime fp32, and thread / mkldnn / compile knobs.

Times only the model stage (``backend.submit`` + ``result`` on pre-collated batches) over the engine's own
length-sorted batch plan: one warm-up pass, then ``--repeats`` passes with the variants interleaved,
median reported. Example:

    python benchmarks/bench_backends_cpu.py --input /work/shared/data/ud_english_ewt/dev/sentences.txt \
        --limit 300 --models minilm random-bert-base --variants torch-fp32 torch-bf16 onnx-fp32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from attnx.config import load_config
from attnx.engine.backends.base import collate
from attnx.engine.batching import plan_batches
from attnx.engine.model import load_model
from attnx.engine.sources import Source
from attnx.engine.tokenize import WindowTokenizer

VARIANTS = ("torch-fp32", "torch-bf16", "onnx-fp32", "torch-fp32-nomkldnn", "torch-fp32-1thread",
            "torch-fp32-compile", "torch-bf16-compile")


def _window(path: str, limit: int, tokenizer: object):  # noqa: ANN202
    records = [r for _, r in zip(range(limit), Source(path, "text", "text", None), strict=False)]
    return WindowTokenizer(tokenizer, 512)(records)


def _backend(variant: str, model: str, store_dtype: str):  # noqa: ANN202
    dtype = torch.bfloat16 if "bf16" in variant else torch.float32
    loaded = load_model(model, dtype=dtype)
    layers, heads = list(range(loaded.num_layers)), list(range(loaded.num_heads))
    if variant.startswith("onnx"):
        from attnx.engine.backends.onnx_backend import OnnxBackend

        return loaded, OnnxBackend(loaded, layers, heads, store_dtype)
    from attnx.engine.backends.torch_backend import TorchBackend

    if variant.endswith("compile"):
        loaded.model.forward = torch.compile(loaded.model.forward, dynamic=True)
    return loaded, TorchBackend(loaded, layers, heads, store_dtype)


class _Knobs:
    """Per-variant global torch settings, applied around each timed pass only."""

    def __init__(self, variant: str) -> None:
        self.threads = 1 if variant.endswith("1thread") else None
        self.mkldnn = not variant.endswith("nomkldnn")

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads(), torch.backends.mkldnn.enabled
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.backends.mkldnn.enabled = self.mkldnn

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved[0])
        torch.backends.mkldnn.enabled = self.saved[1]


def run_model(model: str, variants: list[str], path: str, limit: int, repeats: int, store_dtype: str) -> list[dict]:
    """Set every variant up, warm each up once, then time them interleaved (A B C A B C ...): fair on a
    machine shared with other jobs. Returns one row per variant (median of ``repeats`` passes)."""
    cfg = load_config()
    setups = {}
    for variant in variants:
        t = time.perf_counter()
        loaded, backend = _backend(variant, model, store_dtype)
        setups[variant] = [loaded, backend, time.perf_counter() - t, []]
    loaded = setups[variants[0]][0]
    window = _window(path, limit, loaded.tokenizer)
    plan = plan_batches(window.length, cfg.cpu_attn_budget_bytes, loaded.num_layers, loaded.num_heads,
                        cfg.cpu_max_batch_tokens)
    pad = loaded.tokenizer.pad_token_id or 0
    batches = [collate(window.ids, window.offsets, window.segment, plan.batch(j), pad) for j in range(len(plan))]
    for rep in range(repeats + 1):  # pass 0 is the warm-up (and torch.compile's compile pass)
        for variant in variants:
            backend = setups[variant][1]
            with _Knobs(variant):
                t0 = time.perf_counter()
                for b in batches:
                    backend.submit(b).result()
                if rep:
                    setups[variant][3].append(time.perf_counter() - t0)
    rows = []
    for variant in variants:
        _, backend, setup, times = setups[variant]
        backend.close()
        sec = statistics.median(times)
        rows.append({"model": model, "variant": variant, "records": len(window), "batches": len(batches),
                     "tokens": int(window.length.sum()), "median_s": round(sec, 3),
                     "sent_per_s": round(len(window) / sec, 1), "all_s": [round(t, 3) for t in times],
                     "setup_s": round(setup, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="one sentence per line")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["minilm"])
    ap.add_argument("--variants", nargs="+", default=["torch-fp32", "torch-bf16", "onnx-fp32"],
                    choices=VARIANTS)
    ap.add_argument("--store-dtype", default="float16", choices=["float16", "float32", "uint8"])
    ap.add_argument("--json", action="store_true", help="print one JSON line per result")
    args = ap.parse_args()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {args.input} x {args.limit}")
    for model in args.models:
        for r in run_model(model, args.variants, args.input, args.limit, args.repeats, args.store_dtype):
            print(json.dumps(r) if args.json else
                  f"{model:18s} {r['variant']:20s} {r['sent_per_s']:8.1f} sent/s  median {r['median_s']:.3f}s "
                  f"of {r['all_s']}  ({r['batches']} batches, {r['tokens']} tokens, setup {r['setup_s']}s)",
                  flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
