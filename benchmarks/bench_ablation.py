"""Batched vs sequential ablation evaluation, in one run on the same data and model.

Evaluates the unablated model, every single head and every whole layer (1 + L*H + L configurations) on
``--n`` examples three ways and checks they agree:

- ``sequential``: a separate pass over the data per configuration (what 1 + L*H + L runs of an
  evaluation script do, minus their model loading);
- ``batched``: all configurations ride in the batch dimension of one pass, each row with its own head
  mask, every configuration running every layer;
- ``batched+prefix`` (attnx's default): as ``batched``, but layers below a configuration's first ablated
  layer are computed once and shared.

Reports wall time (median of ``--repeats`` after a warm-up), example-configuration forwards per second,
the speed-up over sequential, and the ceiling: the bare unablated forward rate of the same model on the
same examples. Example::

    python benchmarks/bench_ablation.py --data /work/shared/data/glue_sst2_dev/dev.tsv --n 48
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from attnx.ablation.data import read_labelled
from attnx.ablation.run import (
    build_configs,
    encode,
    load_task_model,
    n_heads_shape,
    predict_configs,
    resolve_device,
)


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    model = next(
        (line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")),
        platform.processor(),
    )
    info = {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, repeats: int, device: torch.device) -> tuple[float, object]:  # noqa: ANN001
    times, out = [], None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--data", default="/work/shared/data/glue_sst2_dev/dev.tsv")
    ap.add_argument("--n", type=int, default=48, help="examples evaluated")
    ap.add_argument("--mode", default="uniform", choices=["uniform", "zero"])
    ap.add_argument("--repeats", type=int, default=1)
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
        "bare forward (unablated only)": dict(configs=configs[:1], share_prefix=False, configs_per_pass=1),
        "sequential": dict(configs=configs, share_prefix=False, configs_per_pass=1),
        "batched": dict(configs=configs, share_prefix=False, configs_per_pass=None),
        "batched+prefix": dict(configs=configs, share_prefix=True, configs_per_pass=None),
    }
    results: dict[str, dict] = {}
    outputs: dict[str, np.ndarray] = {}
    for name, v in variants.items():
        seconds, out = _time(
            lambda v=v: predict_configs(
                tm, enc, subset, v["configs"], args.mode, v["share_prefix"], v["configs_per_pass"]
            ),
            args.repeats,
            dev,
        )
        outputs[name] = out
        forwards = len(v["configs"]) * len(subset)
        results[name] = {"seconds": seconds, "example_configs": forwards, "per_s": forwards / seconds}
    seq = results["sequential"]["seconds"]
    for name in results:
        results[name]["speedup_vs_sequential"] = seq / results[name]["seconds"]
    agree = {
        name: float(np.abs(outputs[name] - outputs["sequential"]).max())
        for name in ("batched", "batched+prefix")
    }
    report = {
        "machine": machine(),
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
        "results": results,
        "max_abs_logit_diff_vs_sequential": agree,
    }
    m = report["machine"]
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, "
        f"load {m['load_average_1min']:.1f}" + (f", GPU {m['gpu']}" if "gpu" in m else "")
    )
    print(
        f"{args.model} ({layers}x{heads}) on {len(subset)} examples, {n_cfg} configurations, "
        f"mode {args.mode}, {report['device']} {report['dtype']}, median of {args.repeats}"
    )
    print(f"{'variant':32s} {'seconds':>9s} {'ex*cfg/s':>10s} {'vs sequential':>14s}")
    for name, r in results.items():
        print(f"{name:32s} {r['seconds']:9.2f} {r['per_s']:10.1f} {r['speedup_vs_sequential']:13.2f}x")
    print(
        f"ceiling: the bare forward rate above "
        f"({results['bare forward (unablated only)']['per_s']:.1f} ex/s) "
        f"is what {n_cfg} full passes per example would run at"
    )
    print(f"max |logit difference| vs sequential: {agree}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
