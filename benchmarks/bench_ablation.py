"""Batched vs sequential ablation evaluation, in one run on the same data and model.

Evaluates the unablated model, every single head and every whole layer (1 + L*H + L configurations) on
``--n`` examples three ways and checks they agree:

- ``sequential``: a separate pass over the data per configuration (what 1 + L*H + L runs of an
  evaluation script do, minus their model loading);
- ``batched``: all configurations ride in the batch dimension of one pass, each row with its own head
  mask, every configuration running every layer;
- ``batched+prefix`` (attnx's default): as ``batched``, but layers below a configuration's first ablated
  layer are computed once and shared.

All three do the same work (every configuration on every example), so their seconds compare directly.
After a warm-up, ``--repeats`` rounds run the variants in turn (interleaved), with the 1-minute load read
before and after each; the table gives median [min..max] seconds, example-configurations per second, and
the speed-up over sequential of the same round. A fourth row, the unablated forward alone, is a reference
rate (one configuration, 1/C of the work; its time for all C configurations is an extrapolation, labelled
so): sequential runs at about this rate, and prefix sharing can beat it, so it is not a ceiling. Example::

    python benchmarks/bench_ablation.py --data /work/shared/data/glue_sst2_dev/dev.tsv --n 32 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_sections import ablation_section

from attnx.ablation.batching import encode
from attnx.ablation.configs import build_configs
from attnx.ablation.data import read_labelled
from attnx.ablation.forward import predict_configs
from attnx.ablation.task_model import load_task_model, n_heads_shape, resolve_device
from attnx.benchkit import interleave, load_range, machine, spread, write_result

REFERENCE = "unablated forward only"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device):  # noqa: ANN001, ANN202 - () -> dict with seconds and the output
    def run() -> dict:
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        return {"seconds": time.perf_counter() - t0, "out": out}

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--data", default="/work/shared/data/glue_sst2_dev/dev.tsv")
    ap.add_argument("--n", type=int, default=48, help="examples evaluated")
    ap.add_argument("--mode", default="uniform", choices=["uniform", "zero"])
    ap.add_argument("--repeats", type=int, default=3, help="rounds, variants interleaved in each")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ablation.json"))
    args = ap.parse_args()

    device, dtype = resolve_device(args.device)
    tm = load_task_model(args.model, probe="logistic", device=device, dtype=dtype, pooling="mean")
    hidden = tm.lm.model.config.hidden_size
    gen = torch.Generator().manual_seed(0)
    from attnx.ablation.probe import LinearProbe

    # a fixed random probe: the benchmark times the forward passes, not the fit
    tm.probe = LinearProbe(
        torch.zeros(hidden),
        torch.ones(hidden),
        torch.randn(2, hidden, generator=gen),
        torch.zeros(2),
        "classification",
    )
    data = read_labelled(args.data)
    keep = np.sort(np.random.default_rng(0).permutation(len(data))[: args.n])
    data = data.subset(keep)
    enc = encode(tm, data)
    subset = np.arange(len(data), dtype=np.int64)
    layers, heads = n_heads_shape(tm)
    configs = build_configs(layers, heads).masks
    n_cfg = len(configs)
    dev = tm.lm.device

    # warm-up on a few examples (allocator, kernels, numba-free but torch lazy init)
    predict_configs(tm, enc, subset[:4], configs[:8], args.mode)
    predict_configs(tm, enc, subset[:4], configs[:2], args.mode, share_prefix=False, configs_per_pass=1)

    variants = {
        "sequential": dict(configs=configs, share_prefix=False, configs_per_pass=1),
        "batched": dict(configs=configs, share_prefix=False, configs_per_pass=None),
        "batched+prefix": dict(configs=configs, share_prefix=True, configs_per_pass=None),
        REFERENCE: dict(configs=configs[:1], share_prefix=False, configs_per_pass=1),
    }
    runs = {
        name: _timed(lambda v=v: predict_configs(tm, enc, subset, v["configs"], args.mode, v["share_prefix"],
                                                 v["configs_per_pass"]), dev)
        for name, v in variants.items()
    }
    reps = interleave(runs, args.repeats, warmup=False, log=print)
    outputs = {name: r[-1].pop("out") for name, r in reps.items()}
    for r in reps.values():
        for x in r:
            x.pop("out", None)
    seq_rate = [n_cfg * len(subset) / x["seconds"] for x in reps["sequential"]]  # per round
    results: dict[str, dict] = {}
    for name, v in variants.items():
        secs = [x["seconds"] for x in reps[name]]
        work = len(v["configs"]) * len(subset)
        results[name] = {
            "example_configs": work,
            "seconds": spread(secs),
            "per_s": spread([work / t for t in secs]),
            "rate_vs_sequential": spread([work / t / q for t, q in zip(secs, seq_rate, strict=True)]),
            "reps": reps[name],
        }
    ref = results[REFERENCE]
    ref["extrapolated_seconds_all_configs"] = spread([t * n_cfg for t in ref["seconds"]["values"]])
    agree = {
        name: float(np.abs(outputs[name] - outputs["sequential"]).max()) for name in ("batched", "batched+prefix")
    }
    report = {
        "harness": "bench_ablation",
        "command": "python benchmarks/bench_ablation.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "data": args.data,
        "model": args.model,
        "device": str(dev),
        "dtype": str(dtype).replace("torch.", ""),
        "mode": args.mode,
        "examples": len(subset),
        "configurations": n_cfg,
        "layers": layers,
        "heads": heads,
        "mean_wordpieces": float(np.mean([len(x) for x in enc.ids])),
        "repeats": args.repeats,
        "load_1min": load_range(reps),
        "results": results,
        "max_abs_logit_diff_vs_sequential": agree,
    }
    print("\n" + ablation_section(report))
    path = write_result(args.out, report)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
