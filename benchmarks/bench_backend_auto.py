"""The default ``--backend auto`` against ``--backend torch`` and the plain transformers baseline, on CPU.

Two parts, kept apart:

* start-up of ``auto``: the ONNX export and the parity check on a cold cache (fresh ``ATTNX_CACHE``), then
  the same choice again with everything cached (the export's sha256 check and the stored verdict), timed in
  one process per repetition with the model already loaded;
* steady state: ``attnx extract`` end to end (default backend, then ``--backend torch``) and the baseline
  (transformers eager, ``output_attentions=True``, batch 32 in corpus order, float32 kept, ``np.save``), each
  in a fresh subprocess (the baseline: ``attnx.bench_workers``), interleaved, ``--repeats`` times. ``seconds`` is the
  extraction loop only (model load, backend choice and session set-up excluded); ``wall_s`` is the whole
  subprocess, so ``wall_s - seconds`` is each variant's start-up with a warm export cache.

Load (``os.getloadavg``) is recorded around every run and the CPU's ``lscpu`` flags once. Example:

    python benchmarks/bench_backend_auto.py --input /work/shared/data/ud_english_ewt/dev/sentences.txt \
        --limit 2000 --repeats 3 --out benchmarks/results/backend_auto.json
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

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "f16c", "fma")


def lscpu() -> dict:
    """Model name, CPU count and the vector flags that decide which kernels onnxruntime and torch use."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {
        "model_name": fields.get("Model name", "").strip(),
        "cpus": fields.get("CPU(s)", "").strip(),
        "flags_of_interest": {f: f in flags for f in FLAGS_OF_INTEREST},
        "flags": " ".join(flags),
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def startup_worker(model: str, dtype: str, cache: str) -> dict:
    """In a fresh process: load the model, then time the auto choice cold (export + parity) and cached."""
    os.environ["ATTNX_CACHE"] = cache
    from attnx.engine import backend_choice
    from attnx.engine.model import load_model
    from attnx.engine.onnx_export import ensure_onnx

    loaded = load_model(model)
    layers, heads = list(range(loaded.num_layers)), list(range(loaded.num_heads))
    t = time.perf_counter()
    ensure_onnx(loaded, layers, heads, dtype if dtype in ("float32", "float16", "uint8") else "float32")
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    cold = backend_choice.choose_backend("auto", loaded, layers, heads, dtype)
    parity_s = time.perf_counter() - t  # export cached by now: this is the parity check (and the sha256 check)
    t = time.perf_counter()
    cached = backend_choice.choose_backend("auto", loaded, layers, heads, dtype)
    cached_s = time.perf_counter() - t
    t = time.perf_counter()
    from attnx.engine.backends.onnx_backend import OnnxBackend

    OnnxBackend(loaded, layers, heads, dtype).close()
    session_s = time.perf_counter() - t
    return {
        "export_s": export_s,
        "parity_check_s": parity_s,
        "cold_total_s": export_s + parity_s,
        "cached_choice_s": cached_s,
        "onnx_session_s": session_s,
        "backend": cold.backend,
        "cached_backend": cached.backend,
        "verdict": cold.verdict.to_attrs() if cold.verdict else None,
    }


def extract_worker(spec_json: str) -> dict:
    """In a fresh process: ``attnx.extract`` of the first ``limit`` sentences with ``backend``; the loop's seconds
    (Summary.seconds: model load, backend choice and session set-up excluded) and the backend that ran."""
    from attnx.engine.extract import ExtractOptions, extract

    spec = json.loads(spec_json)
    work = Path(spec["workdir"])
    lines = Path(spec["input"]).read_text(encoding="utf-8").splitlines()[: spec["limit"]]
    src = work / "input.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    s = extract(ExtractOptions(input=str(src), output=str(work / "store.zarr"), model=spec["model"], device="cpu",
                               dtype=spec["dtype"], backend=spec["backend"]))
    return {"sentences": s.records, "tokens": s.tokens_this_run, "seconds": s.seconds, "backend_ran": s.backend,
            "bytes_stored": s.store_bytes}


def _run(cmd: list[str], env: dict) -> tuple[dict, float]:
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[-1][:80]}: {done.stderr.strip().splitlines()[-3:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def summarise(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "all": [round(v, 3) for v in values],
    }


def summarise_runs(result: dict) -> dict:
    """Medians and spreads per variant, the start-up parts, and the auto/torch ratio per repetition (paired:
    the two ran one after the other, under about the same load)."""
    summary: dict = {}
    for label in ("auto", "torch", "baseline"):
        rows = [r for r in result["runs"] if r["variant"] == label]
        summary[label] = {
            "sent_per_s": summarise([r["sent_per_s"] for r in rows]),
            "startup_s_warm_cache": summarise([r["startup_s"] for r in rows]),
            "backend_ran": sorted({r.get("backend_ran", "transformers") for r in rows}),
        }
    for key in ("export_s", "parity_check_s", "cold_total_s", "cached_choice_s", "onnx_session_s"):
        summary.setdefault("auto_startup", {})[key] = summarise([r[key] for r in result["startup"]])
    auto, torch_, baseline = (summary[k]["sent_per_s"]["median"] for k in ("auto", "torch", "baseline"))
    summary["auto_over_torch"] = round(auto / torch_, 3)
    summary["auto_over_baseline"] = round(auto / baseline, 3)
    summary["torch_over_baseline"] = round(torch_ / baseline, 3)
    by_rep = {(r["variant"], r["rep"]): r["sent_per_s"] for r in result["runs"]}
    reps = sorted({r["rep"] for r in result["runs"]})
    summary["auto_over_torch_per_rep"] = summarise([by_rep["auto", k] / by_rep["torch", k] for k in reps])
    summary["load_1min"] = summarise([r["load_before"][0] for r in result["runs"]])
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default="/work/shared/data/ud_english_ewt/dev/sentences.txt")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--out", default="benchmarks/results/backend_auto.json")
    ap.add_argument("--startup-worker", nargs=3, metavar=("MODEL", "DTYPE", "CACHE"), help=argparse.SUPPRESS)
    ap.add_argument("--extract-worker", metavar="SPEC_JSON", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.startup_worker:
        print(json.dumps(startup_worker(*args.startup_worker)))
        return
    if args.extract_worker:
        print(json.dumps(extract_worker(args.extract_worker)))
        return
    if not Path(args.input).is_file():
        sys.exit(f"{args.input}: not found (one sentence per line)")
    from attnx.benchkit import machine

    work = Path(tempfile.mkdtemp(prefix="attnx-bench-auto-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result: dict = {
        "what": "attnx extract default (--backend auto) vs --backend torch vs transformers output_attentions=True",
        "input": args.input,
        "limit": args.limit,
        "model": args.model,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "machine": machine(),
        "lscpu": lscpu(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "startup": [],
        "runs": [],
    }
    try:
        # 1. start-up: a fresh cache per repetition (cold), the same cache again (cached)
        for rep in range(args.repeats):
            cache = work / f"cache-cold-{rep}"
            before = load()
            row, wall = _run([sys.executable, __file__, "--startup-worker", args.model, args.dtype, str(cache)], env)
            result["startup"].append({**row, "rep": rep, "wall_s": wall, "load_before": before, "load_after": load()})
            print(f"startup rep {rep}: export {row['export_s']:.1f}s, parity {row['parity_check_s']:.1f}s, "
                  f"cached choice {row['cached_choice_s']:.2f}s, session {row['onnx_session_s']:.2f}s -> "
                  f"{row['backend']} (load {before})", flush=True)
        warm = work / "cache-cold-0"
        # 2. steady state, interleaved; auto runs on the warm cache (its start-up is the cached case)
        base = {"model": args.model, "input": args.input, "limit": args.limit, "dtype": args.dtype}
        variants = {"auto": {"backend": "auto"}, "torch": {"backend": "torch"}, "baseline": {"kind": "baseline"}}
        for rep in range(args.repeats):
            for label, extra in variants.items():
                wd = work / f"{label}-{rep}"
                wd.mkdir()
                spec = {**base, **extra, "label": label, "workdir": str(wd), "warmup": 0}
                before = load()
                cmd = ([sys.executable, "-m", "attnx.bench_workers", json.dumps(spec)] if label == "baseline"
                       else [sys.executable, __file__, "--extract-worker", json.dumps(spec)])
                row, wall = _run(cmd, {**env, "ATTNX_CACHE": str(warm)})
                row.update(variant=label, rep=rep, wall_s=wall, startup_s=wall - row["seconds"],
                           sent_per_s=row["sentences"] / row["seconds"], load_before=before, load_after=load())
                result["runs"].append(row)
                print(f"rep {rep} {label:8s} {row['sent_per_s']:7.1f} sent/s  loop {row['seconds']:.1f}s  "
                      f"wall {wall:.1f}s  backend {row.get('backend_ran', '-')}  load {before}", flush=True)
                shutil.rmtree(wd, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["summary"] = summarise_runs(result)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
