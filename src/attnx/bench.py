"""Extraction throughput: the naive transformers baseline, a bare forward pass and attnx, interleaved in one run.

Every setting is one process per repetition (:mod:`attnx.bench_workers`), so its peak RSS is its own and one
run's caches do not help the next; each process loads its model (start-up), warms up on the first sentences,
then times its steady state over all sentences. Settings run in the same order in each of ``rounds`` rounds,
with the machine's 1-minute load read before and after each; figures are the median [min..max] over rounds,
and each attnx figure is also a ratio to the baseline of the same round.

Ceilings of an attnx row (each a real upper bound on its steady rate, measured in the same run):
``compute only`` (its backend over the same batches, tokenized before the clock, nothing stored, same
process, the faster of two passes), ``codec`` (its own stored values through the store's codec pipeline
into memory), ``disk`` (sequential write + fsync of 256 MiB in the work folder, a setting of its own in
every round; as sentences/s at the row's stored bytes per sentence).
The bare forward pass (SDPA, no maps) is a reference only: attnx's attention code differs from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attnx.benchkit import fmt, interleave, load_range, machine, spread

BASELINE_WHAT = "transformers eager + output_attentions=True, batch 32 in corpus order, padded, float32 np.save"
FORWARD_WHAT = ("transformers forward only (SDPA, no maps) over attnx's sorted batches, tokenized before the "
                "clock; a reference, not a ceiling")


def disk_write_MBps(workdir: Path, mib: int = 256) -> dict:
    """Sequential write of ``mib`` MiB in 64 MiB writes, then fsync, in ``workdir``: MB/s."""
    block = np.ones(64 << 20, np.uint8)
    path = workdir / "disk_probe.bin"
    t = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(mib // 64):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - t
    path.unlink()
    return {"MBps": (mib // 64) * block.nbytes / seconds / 1e6, "seconds": seconds}


def run_in_subprocess(spec: dict, timeout: float = 3600) -> dict:
    """One worker in a fresh interpreter; its last stdout line is its JSON result."""
    cmd = [sys.executable, "-m", "attnx.bench_workers", json.dumps(spec)]
    env = {**os.environ, **{k: str(v) for k, v in spec.get("env", {}).items()}}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec.get('label')} failed: {proc.stderr.strip().splitlines()[-3:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _settings(models: list[str], limits: dict[str, int], o: dict) -> list[dict]:
    """Every (model, setting) of a run, in the order each round runs them."""
    out = []
    for model in models:
        limit = limits.get(model, limits.get("*", 1000))
        run = {"model": model, "limit": limit, "repeat": o["corpus_repeat"], "compute": o["compute"]}
        if not o["skip_baseline"]:
            base_compute = o["compute"] if o["gpu"] else "float32"
            out.append({**run, "kind": "baseline", "label": f"naive transformers (batch 32, {base_compute})",
                        "what": BASELINE_WHAT, "compute": base_compute,
                        "limit": o["baseline_limit"] or limit, "repeat": 1 if o["baseline_limit"] else run["repeat"]})
        out.append({**run, "kind": "forward", "label": f"bare forward, sorted ({o['compute']})", "what": FORWARD_WHAT})
        for backend in o["backends"]:
            for dtype in o["dtypes"]:
                out.append({**run, "kind": "attnx", "label": f"attnx {backend} {o['compute']} -> {dtype}",
                            "what": "attnx.extract end to end into a store", "dtype": dtype, "backend": backend})
        for extra in o["extra_compute"]:
            out.append({**run, "kind": "attnx", "label": f"attnx torch {extra} -> float16", "compute": extra,
                        "what": "attnx.extract end to end into a store", "dtype": "float16"})
        if o["stats_only"]:
            out.append({**run, "kind": "attnx", "label": f"attnx --stats-only ({o['compute']})", "dtype": "float16",
                        "what": "attnx.extract --stats-only (per-map features, no maps)", "stats_only": True})
    return out


def summarise(setting: dict, reps: list[dict], disk: list[dict], base: list[dict] | None) -> dict:
    """Medians and spreads of one setting's repetitions; ratios to the baseline of the same round; ceilings."""
    n = reps[0]["sentences"]
    rate = [r["sentences"] / r["seconds"] for r in reps]
    row = {k: setting[k] for k in ("model", "kind", "label", "what") if k in setting}
    row.update({
        "sentences": n,
        "reps": reps,
        "steady_sent_per_s": spread(rate),
        "tok_per_s": spread([r["tokens"] / r["seconds"] for r in reps]),
        "load_s": spread([r["load_s"] for r in reps]),
        "warmup_s": spread([r["warmup_s"] for r in reps]),
        "warmup_sentences": setting["warmup"],
        "bytes_per_sentence": float(np.median([r["bytes_stored"] / r["sentences"] for r in reps])) or None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in reps),
        "load_1min": load_range(reps),
    })
    if base:
        b = {r["round"]: r["sentences"] / r["seconds"] for r in base}
        row["x_baseline"] = spread([x / b[r["round"]] for x, r in zip(rate, reps, strict=True)])
    if setting["kind"] == "attnx":
        ceil = {}
        if all("compute_only_s" in r for r in reps):
            ceil["compute only"] = spread([r["sentences"] / r["compute_only_s"] for r in reps])
        if all("codec" in r for r in reps):  # stored payload bytes per sentence of this row
            ceil["codec"] = spread([r["codec"]["MBps"] * 1e6 * r["sentences"] / r["attention_bytes"] for r in reps])
            row["codec"] = f"{reps[0]['codec']['codec']}-{reps[0]['codec']['level']}"
        if row["bytes_per_sentence"]:
            ceil["disk"] = spread([d["MBps"] * 1e6 / row["bytes_per_sentence"] for d in disk])
        row["ceilings_sent_per_s"] = ceil
        if ceil:
            low = min(ceil, key=lambda k: ceil[k]["median"])
            row["lowest_ceiling"] = low
            row["of_lowest_ceiling"] = row["steady_sent_per_s"]["median"] / ceil[low]["median"]
    return row


def run_suite(
    input_path: str,
    models: list[str],
    limits: dict[str, int],
    device: str = "cpu",
    compute: str | None = None,
    extra_compute: list[str] = (),
    dtypes: list[str] = ("float16", "uint8"),
    backends: list[str] = ("torch",),
    rounds: int = 3,
    corpus_repeat: int = 1,
    warmup: int = 64,
    memory_repeat: int = 0,
    memory_base: int = 300,
    skip_baseline: bool = False,
    baseline_limit: int | None = None,
    stats_only: bool = False,
    log=print,  # noqa: ANN001
    partial: Callable[[dict], None] | None = None,
    deadline: float | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Every setting once per round, ``rounds`` rounds, interleaved with the disk probe; see the module doc.

    ``partial(result so far)`` runs after every measurement (a harness writes its result file there, so a run
    cut short keeps what it finished); ``deadline`` (``time.time()``): start no round that would end after it;
    ``env``: variables set in every measured process (e.g. ``ATTNX_PRECISION_CHECK_RECORDS``)."""
    work = Path(tempfile.mkdtemp(prefix="attnx-bench-"))
    gpu = device.startswith("cuda")
    compute = compute or ("float16" if gpu else "float32")
    opts = {"compute": compute, "gpu": gpu, "skip_baseline": skip_baseline, "baseline_limit": baseline_limit,
            "corpus_repeat": corpus_repeat, "backends": backends, "dtypes": dtypes, "extra_compute": extra_compute,
            "stats_only": stats_only}
    settings = _settings(models, limits, opts)
    for s in settings:
        s.update({"input": input_path, "device": device, "warmup": warmup, "workdir": str(work / s["model"])})
        s["env"] = dict(env or {})
        Path(s["workdir"]).mkdir(parents=True, exist_ok=True)
    runs = {"disk": lambda: disk_write_MBps(work)}
    for s in settings:
        runs[f"{s['model']}: {s['label']}"] = lambda s=s: run_in_subprocess(s)
    log(f"{len(settings)} settings x {rounds} rounds (each a fresh process: load, warm-up on {warmup}, steady state)")
    head = {
        "harness": "bench_extract",
        "machine": machine_with_devices(),
        "input": input_path,
        "lengths": length_stats(input_path, max(limits.values())),
        "warmup_sentences": warmup,
        "env": dict(env or {}),
    }

    def result_of(reps: dict[str, list[dict]]) -> dict:
        rows = []
        for s in settings:
            if not reps[f"{s['model']}: {s['label']}"]:
                continue  # a partial result: not measured yet
            base = next((reps[f"{b['model']}: {b['label']}"] for b in settings
                         if b["kind"] == "baseline" and b["model"] == s["model"]), None)
            rows.append(summarise(s, reps[f"{s['model']}: {s['label']}"], reps["disk"], base))
        disk = spread([d["MBps"] for d in reps["disk"]])
        return {**head, "rounds": len(reps["disk"]), "rows": rows, "disk_MBps": disk, "load_1min": load_range(reps),
                "model_loads_per_process": max(r.get("model_loads", 0) for v in reps.values() for r in v)}

    def on_result(reps: dict[str, list[dict]]) -> None:
        if partial and reps["disk"]:
            partial({**result_of(reps), "partial": True})

    reps = interleave(runs, rounds, warmup=False, log=log, on_result=on_result, deadline=deadline)
    memory = memory_check(models[0], input_path, device, compute, warmup, memory_base, memory_repeat, work, log)
    result = {**result_of(reps), "rounds_asked": rounds, "memory": memory}
    shutil.rmtree(work, ignore_errors=True)
    return result


def memory_check(model: str, input_path: str, device: str, compute: str, warmup: int, base: int, repeat: int,
                 work: Path, log) -> dict | None:  # noqa: ANN001
    """Peak RSS of attnx on ``base`` sentences and on the same repeated ``repeat`` times (one run each: RSS, not
    speed), with windows of min(1024, base) records so both runs pass through several full windows."""
    if not repeat:
        return None
    env = {"ATTNX_WINDOW_RECORDS": str(min(1024, base))}
    spec = {"kind": "attnx", "model": model, "input": input_path, "device": device, "compute": compute,
            "limit": base, "dtype": "float16", "warmup": warmup, "env": env, "ceilings": False}
    one, many = [], []
    for n, dest in ((1, one), (repeat, many)):
        (work / f"mem{n}").mkdir(parents=True, exist_ok=True)
        log(f"  memory check: {base} sentences x {n}")
        dest.append(run_in_subprocess({**spec, "repeat": n, "label": f"memory x{n}", "workdir": str(work / f"mem{n}")}))
    return {
        "model": model,
        "base_sentences": one[0]["sentences"],
        "repeated_sentences": many[0]["sentences"],
        "window_records": int(env["ATTNX_WINDOW_RECORDS"]),
        "peak_rss_mb": [one[0]["peak_rss_mb"], many[0]["peak_rss_mb"]],
        "rss_profile_mb": [one[0].get("rss_profile_mb"), many[0].get("rss_profile_mb")],
    }


def machine_with_devices() -> dict:
    import torch
    import transformers  # noqa: F401 - recorded by machine()
    import zarr  # noqa: F401

    info = machine()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return info


def length_stats(path: str, limit: int) -> dict:
    """Wordpieces per sentence (MiniLM's uncased tokenizer) of the first ``limit`` lines of ``path``."""
    from transformers import AutoTokenizer

    from attnx.bench_workers import _sentences
    from attnx.engine.model import minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    lengths = np.array([len(x) for x in tok(_sentences(path, limit, 1), truncation=True, max_length=512)["input_ids"]])
    return {"n": int(len(lengths)), "mean": float(lengths.mean()), "median": float(np.median(lengths)),
            "p95": float(np.percentile(lengths, 95)), "max": int(lengths.max())}


# ----------------------------------------------------------------------------------------------------------
# Tables (printed by benchmarks/bench_extract.py and rendered into RESULTS.md by benchmarks/make_results.py)
# ----------------------------------------------------------------------------------------------------------
def markdown_table(result: dict) -> str:
    """Steady-state rates, start-up, bytes and the lowest real ceiling, one line per setting."""
    lines = [
        "| model | run | sentences | start-up s: load + warm-up | steady sent/s | x baseline (same round) "
        "| tokens/s | stored kB/sentence | x fewer bytes | peak RSS MB | lowest ceiling sent/s | of it |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    base = {r["model"]: r for r in result["rows"] if r["kind"] == "baseline"}
    for r in result["rows"]:
        b = base.get(r["model"])
        bps = r.get("bytes_per_sentence")
        fewer = f"{b['bytes_per_sentence'] / bps:.1f}" if b and bps and b.get("bytes_per_sentence") else "-"
        low = r.get("lowest_ceiling")
        ceil = f"{low} {fmt(r['ceilings_sent_per_s'][low], 0)}" if low else "-"
        of = f"{r['of_lowest_ceiling']:.0%}" if low else "-"
        size = f"{bps / 1e3:.1f}" if bps else "-"
        lines.append(
            f"| {r['model']} | {r['label']} | {r['sentences']} | {r['load_s']['median']:.1f} + "
            f"{r['warmup_s']['median']:.1f} | {fmt(r['steady_sent_per_s'])} | {fmt(r.get('x_baseline'), 2)} | "
            f"{r['tok_per_s']['median']:,.0f} | {size} | {fewer} | "
            f"{r['peak_rss_mb']:.0f} | {ceil} | {of} |"
        )
    return "\n".join(lines)


def ceilings_table(result: dict) -> str:
    """Every ceiling of every attnx row, sentences/s median [min..max]."""
    lines = ["| model | run | compute only | codec (which) | disk write |", "|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        c = r.get("ceilings_sent_per_s")
        if c is None:
            continue
        codec = f"{fmt(c.get('codec'), 0)} ({r['codec']})" if "codec" in c else "-"
        lines.append(f"| {r['model']} | {r['label']} | {fmt(c.get('compute only'), 0)} | {codec} | "
                     f"{fmt(c.get('disk'), 0)} |")
    return "\n".join(lines)
