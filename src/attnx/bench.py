"""Throughput benchmarks: the naive transformers baseline, a bare forward pass, and attnx, in one run.

Each measurement runs in its own subprocess (``python -m attnx.bench worker SPEC``) so its peak RSS is
its own and one run's caches do not help the next. Every figure comes with the machine it was measured
on; every attnx figure is also given as a ratio to the baseline measured in the same run.

The baseline is what a typical user writes: eager attention, ``output_attentions=True``, batches of
32 in corpus order padded to the batch's longest sentence, every layer's attention kept as float32
numpy and saved with ``np.save``.

One module because baseline, bare forward and attnx runs must share one worker protocol and one table; that
keeps it near 500 lines.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# ----------------------------------------------------------------------------------------------------------
# The machine and its ceilings
# ----------------------------------------------------------------------------------------------------------
def machine_info() -> dict:
    import torch
    import transformers
    import zarr

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "zarr": zarr.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["driver"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def ceilings(sample: np.ndarray, codec: str, workdir: Path) -> dict:
    """Memory copy GB/s, compression MB/s of ``codec`` on ``sample`` (real stored maps), disk write MB/s,
    and on CUDA the device-to-host copy GB/s (pinned)."""
    import numcodecs

    out: dict[str, float] = {}
    big = np.ones(64 << 20, np.uint8)
    dst = np.empty_like(big)
    np.copyto(dst, big)  # fault the pages in before timing
    t = time.perf_counter()
    for _ in range(5):
        np.copyto(dst, big)
    out["memcpy_GBps"] = 5 * big.nbytes / (time.perf_counter() - t) / 1e9
    data = np.ascontiguousarray(sample).view(np.uint8)
    comp = {
        "blosc-zstd": numcodecs.Blosc(
            cname="zstd", clevel=1, shuffle=numcodecs.Blosc.BITSHUFFLE, typesize=sample.itemsize
        ),
        "blosc-lz4": numcodecs.Blosc(
            cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE, typesize=sample.itemsize
        ),
        "zstd": numcodecs.Zstd(level=1),
    }.get(codec)
    if comp is not None and data.nbytes:
        t = time.perf_counter()
        reps = max(1, int(64e6 // data.nbytes))
        for _ in range(reps):
            encoded = comp.encode(data)
        out["compress_MBps"] = reps * data.nbytes / (time.perf_counter() - t) / 1e6
        out["compress_ratio"] = data.nbytes / len(encoded)
    path = workdir / "disk_probe.bin"
    t = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(4):
            fh.write(big)
        fh.flush()
        os.fsync(fh.fileno())
    out["disk_write_MBps"] = 4 * big.nbytes / (time.perf_counter() - t) / 1e6
    path.unlink()
    import torch

    if torch.cuda.is_available():
        dev = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        host = torch.empty(256 << 20, dtype=torch.uint8, pin_memory=True)
        host.copy_(dev)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(5):
            host.copy_(dev, non_blocking=True)
        torch.cuda.synchronize()
        out["d2h_GBps"] = 5 * dev.numel() / (time.perf_counter() - t) / 1e9
    return out


# ----------------------------------------------------------------------------------------------------------
# Workers (each runs in its own process)
# ----------------------------------------------------------------------------------------------------------
def _sentences(path: str, limit: int, repeat: int) -> list[str]:
    lines = [x.strip() for x in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = lines[:limit] if limit else lines
    return lines * repeat


def _eager_model(spec: dict):  # noqa: ANN202
    """The baseline's model: transformers' eager attention, as a typical user loads it."""
    from attnx.engine.extract import COMPUTE_DTYPES
    from attnx.engine.model import load_model

    dtype = COMPUTE_DTYPES[spec.get("compute", "float32")]
    return load_model(spec["model"], device=spec.get("device", "cpu"), dtype=dtype, attn_implementation="eager")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker_baseline(spec: dict) -> dict:
    """transformers eager + output_attentions, batch 32 in corpus order, padded, float32 kept, np.save."""
    import torch

    loaded = _eager_model(spec)
    model, tok, device = loaded.model, loaded.tokenizer, spec.get("device", "cpu")
    sentences = _sentences(spec["input"], spec["limit"], spec.get("repeat", 1))
    out = Path(spec["workdir"]) / "baseline"
    out.mkdir(parents=True, exist_ok=True)
    bs = spec.get("batch_size", 32)
    t0 = time.perf_counter()
    tokens = 0
    for k in range(0, len(sentences), bs):
        enc = tok(sentences[k : k + bs], padding=True, truncation=True, max_length=512, return_tensors="pt").to(device)
        tokens += int(enc["attention_mask"].sum())
        with torch.no_grad():
            res = model(**enc, output_attentions=True)
        attn = torch.stack(res.attentions).float().cpu().numpy()  # (layers, B, H, T, T)
        np.save(out / f"batch{k // bs:06d}.npy", attn)
    _sync(device)
    seconds = time.perf_counter() - t0
    nbytes = sum(f.stat().st_size for f in out.iterdir())
    return {"sentences": len(sentences), "tokens": tokens, "seconds": seconds, "bytes_stored": nbytes}


def worker_forward(spec: dict) -> dict:
    """The ceiling: transformers' forward pass alone (SDPA, no attention output) over attnx's batches."""
    import torch

    from attnx.config import load_config
    from attnx.engine.backends.base import collate
    from attnx.engine.batching import plan_batches
    from attnx.engine.extract import COMPUTE_DTYPES
    from attnx.engine.model import load_model
    from attnx.engine.tokenize import WindowTokenizer, windows

    dtype = COMPUTE_DTYPES[spec.get("compute", "float32")]
    device = spec.get("device", "cpu")
    loaded = load_model(spec["model"], device=device, dtype=dtype, attn_implementation="sdpa")
    cfg = load_config()
    sentences = _sentences(spec["input"], spec["limit"], spec.get("repeat", 1))
    from attnx.engine.sources import Record

    records = [Record(i, i + 1, s) for i, s in enumerate(sentences)]
    wt = WindowTokenizer(loaded.tokenizer, 512)
    budget = spec.get("budget_bytes") or cfg.cpu_attn_budget_bytes
    max_tokens = cfg.cpu_max_batch_tokens if device == "cpu" else cfg.cuda_max_batch_tokens
    t0 = time.perf_counter()
    tokens = 0
    for chunk in windows(records, cfg.window_records):
        w = wt(chunk)
        plan = plan_batches(w.length, budget, loaded.num_layers, loaded.num_heads, max_tokens)
        for j in range(len(plan)):
            b = collate(w.ids, w.offsets, w.segment, plan.batch(j), 0)
            tokens += int(b.lengths.sum())
            with torch.inference_mode():
                loaded.model(
                    input_ids=torch.from_numpy(b.input_ids).to(device),
                    attention_mask=torch.from_numpy(b.attention_mask).to(device),
                    token_type_ids=torch.from_numpy(b.token_type_ids).to(device),
                )
    _sync(device)
    return {"sentences": len(sentences), "tokens": tokens, "seconds": time.perf_counter() - t0, "bytes_stored": 0}


def worker_attnx(spec: dict) -> dict:
    """attnx extract end to end into a store on disk."""
    from attnx.engine.extract import ExtractOptions, extract

    src = Path(spec["workdir"]) / "input.txt"
    if not src.exists():
        src.write_text(
            "\n".join(_sentences(spec["input"], spec["limit"], spec.get("repeat", 1))) + "\n", encoding="utf-8"
        )
    out = Path(spec["workdir"]) / f"store-{spec['label']}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    opts = ExtractOptions(
        input=str(src),
        output=str(out),
        model=spec["model"],
        device=spec.get("device", "cpu"),
        dtype=spec.get("dtype", "float16"),
        compute_dtype=spec.get("compute"),
        codec=spec.get("codec", "auto"),
        backend=spec.get("backend", "torch"),
        budget_bytes=spec.get("budget_bytes"),
        **({"stats_only": True} if spec.get("stats_only") else {}),
    )
    s = extract(opts)
    if (out / "attn").is_dir():  # a --stats-only store has no maps to sample
        sample = np.asarray(__import__("zarr").open_array(str(out / "attn"), mode="r")[: 4 << 20])
        np.save(Path(spec["workdir"]) / f"sample-{spec['label']}.npy", sample)
    import torch

    device_peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {
        "sentences": s.records,
        "tokens": s.tokens_this_run,
        "seconds": s.seconds,
        "bytes_stored": s.store_bytes,
        "attention_bytes": s.attention_bytes,
        "peak_device_mb": device_peak,
    }


WORKERS = {"baseline": worker_baseline, "forward": worker_forward, "attnx": worker_attnx}


def run_in_subprocess(spec: dict, timeout: float = 3600) -> dict:
    """Run one worker in a fresh interpreter; adds ``peak_rss_mb`` (the child's max resident set)."""
    cmd = [sys.executable, "-m", "attnx.bench", "worker", json.dumps(spec)]
    env = {**os.environ, **{k: str(v) for k, v in spec.get("env", {}).items()}}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    # wait4 on this child gives its own peak RSS, not the maximum over all children so far
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec.get('label')} failed: {stderr.strip().splitlines()[-1:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.setdefault("peak_rss_mb", usage.ru_maxrss / 1024)
    return result


def derive(row: dict) -> dict:
    s = row["seconds"]
    row["sent_per_s"] = row["sentences"] / s
    row["tok_per_s"] = row["tokens"] / s
    row["bytes_per_sentence"] = row["bytes_stored"] / row["sentences"] if row.get("bytes_stored") else None
    row["attn_MBps_produced"] = row.get("attention_bytes", 0) / s / 1e6
    row["MBps_written"] = row.get("bytes_stored", 0) / s / 1e6
    return row


def bound(row: dict, forward: dict | None, ceil: dict) -> str:
    """Which measured ceiling is closest to limiting an attnx row: each ceiling as sentences/s."""
    limits = {}
    if forward:
        limits["forward pass"] = forward["sent_per_s"]
    per_sent_raw = row.get("attention_bytes", 0) / row["sentences"]
    per_sent_disk = (row.get("bytes_stored") or 0) / row["sentences"]
    if per_sent_raw and ceil.get("compress_MBps"):
        limits["compression"] = ceil["compress_MBps"] * 1e6 / per_sent_raw
    if per_sent_raw and ceil.get("d2h_GBps"):
        limits["device-to-host copy"] = ceil["d2h_GBps"] * 1e9 / per_sent_raw
    if per_sent_disk and ceil.get("disk_write_MBps"):
        limits["disk write"] = ceil["disk_write_MBps"] * 1e6 / per_sent_disk
    if not limits:
        return "-"
    name = min(limits, key=limits.get)
    return f"{name} ({limits[name]:,.0f} sent/s)"


def run_suite(
    input_path: str,
    models: list[str],
    limits: dict[str, int],
    device: str = "cpu",
    compute: str | None = None,
    extra_compute: list[str] = (),
    dtypes: list[str] = ("float16", "uint8"),
    backends: list[str] = ("torch",),
    memory_repeat: int = 0,
    memory_base: int = 300,
    skip_baseline: bool = False,
    baseline_limit: int | None = None,
    repeat: int = 1,
    stats_only: bool = False,
    log=print,  # noqa: ANN001
) -> dict:
    """Baseline, bare forward and every attnx setting, each in its own process, on one machine; see module doc."""
    work = tempdir()
    machine = machine_info()
    log(f"machine: {machine}")
    rows: list[dict] = []
    gpu = device.startswith("cuda")
    compute = compute or ("float16" if gpu else "float32")

    def record(model: str, kind: str, label: str, **spec) -> dict:
        spec = {
            "kind": kind,
            "model": model,
            "input": input_path,
            "device": device,
            "workdir": str(work / model),
            "label": label,
            **spec,
        }
        Path(spec["workdir"]).mkdir(parents=True, exist_ok=True)
        log(f"  {model:18s} {label:34s} running ...")  # each run takes minutes on a CPU: say what runs
        row = derive({**run_in_subprocess(spec), "model": model, "kind": kind, "label": label})
        rows.append(row)
        log(f"  {model:18s} {label:34s} {row['sent_per_s']:9.1f} sent/s  {row['peak_rss_mb']:7.0f} MB RSS")
        return row

    forward: dict[str, dict] = {}
    for model in models:
        limit = limits.get(model, limits.get("*", 1000))
        log(f"{model}: {limit} sentences x {repeat}")
        if not skip_baseline:
            base_n = baseline_limit or limit
            record(
                model,
                "baseline",
                f"naive transformers (batch 32, {compute if gpu else 'float32'})",
                limit=base_n,
                repeat=1 if baseline_limit else repeat,
                compute=compute if gpu else "float32",
            )
        run = {"limit": limit, "repeat": repeat, "compute": compute}
        forward[model] = record(model, "forward", f"bare forward, sorted ({compute})", **run)
        for backend in backends:
            for dtype in dtypes:
                record(model, "attnx", f"attnx {backend} {compute} -> {dtype}", dtype=dtype, backend=backend, **run)
        for extra in extra_compute:
            record(model, "attnx", f"attnx torch {extra} -> float16", dtype="float16", **{**run, "compute": extra})
        if stats_only:
            record(model, "attnx", f"attnx --stats-only ({compute})", dtype="float16", stats_only=True, **run)
    memory = None
    if memory_repeat:
        model = models[0]
        env = {"ATTNX_WINDOW_RECORDS": str(min(1024, memory_base))}  # several full windows in both runs
        one = record(
            model,
            "attnx",
            f"attnx, {memory_base} sentences",
            limit=memory_base,
            dtype="float16",
            workdir=str(work / "mem1"),
            env=env,
        )
        many = record(
            model,
            "attnx",
            f"attnx, same x{memory_repeat}",
            limit=memory_base,
            repeat=memory_repeat,
            dtype="float16",
            workdir=str(work / "mem10"),
            env=env,
        )
        memory = {
            "model": model,
            "base_sentences": one["sentences"],
            "repeated_sentences": many["sentences"],
            "window_records": int(env["ATTNX_WINDOW_RECORDS"]),
            "peak_rss_mb": [one["peak_rss_mb"], many["peak_rss_mb"]],
            "rss_profile_mb": [one.get("rss_profile_mb"), many.get("rss_profile_mb")],
        }
    sample_file = next(iter(sorted((work / models[0]).glob("sample-*float16.npy"))), None)
    sample = np.load(sample_file) if sample_file else np.zeros(1 << 20, np.float16)
    ceil = ceilings(sample, "blosc-lz4", work)
    for row in rows:
        row["bound"] = bound(row, forward.get(row["model"]), ceil) if row["kind"] == "attnx" else "-"
    stats = length_stats(input_path, max(limits.values()))
    shutil.rmtree(work, ignore_errors=True)
    return {
        "machine": machine,
        "input": input_path,
        "lengths": stats,
        "rows": rows,
        "ceilings": ceil,
        "memory": memory,
        "table": markdown_table(rows),
    }


def markdown_table(rows: list[dict], baseline_key: str = "baseline") -> str:
    """One line per measurement, with ratios to the baseline of the same model."""
    base = {r["model"]: r for r in rows if r["kind"] == baseline_key}
    lines = [
        "| model | run | sentences | sent/s | tokens/s | x baseline | attn MB/s | bytes/sentence | x fewer bytes "
        "| peak RSS MB | bound by |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        b = base.get(r["model"])
        speed = f"{r['sent_per_s'] / b['sent_per_s']:.2f}" if b else "-"
        bps = r.get("bytes_per_sentence")
        fewer = f"{b['bytes_per_sentence'] / bps:.1f}" if b and bps and b.get("bytes_per_sentence") else "-"
        size = f"{bps / 1e3:.1f} kB" if bps else "-"
        mbps = f"{r['attn_MBps_produced']:.1f}" if r.get("attn_MBps_produced") else "-"
        lines.append(
            f"| {r['model']} | {r['label']} | {r['sentences']} | {r['sent_per_s']:.1f} | {r['tok_per_s']:.0f} | "
            f"{speed} | {mbps} | {size} | {fewer} | {r['peak_rss_mb']:.0f} | {r.get('bound', '-')} |"
        )
    return "\n".join(lines)


def length_stats(path: str, limit: int) -> dict:
    """Wordpieces per sentence (MiniLM's uncased tokenizer) of the first ``limit`` lines of ``path``."""
    from transformers import AutoTokenizer

    from attnx.engine.model import minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    lengths = np.array([len(x) for x in tok(_sentences(path, limit, 1), truncation=True, max_length=512)["input_ids"]])
    return {
        "n": int(len(lengths)),
        "mean": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
    }


def tempdir(prefix: str = "attnx-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        import threading

        import psutil

        spec = json.loads(sys.argv[2])
        samples: list[float] = []
        done = threading.Event()

        def sample_rss() -> None:  # RSS over the run, to tell a plateau from growth
            me = psutil.Process()
            while not done.wait(0.2):
                samples.append(me.memory_info().rss / 2**20)

        threading.Thread(target=sample_rss, daemon=True).start()
        result = WORKERS[spec["kind"]](spec)
        done.set()
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if samples:
            result["rss_profile_mb"] = [
                round(samples[min(len(samples) - 1, int(q * len(samples)))]) for q in (0.1, 0.25, 0.5, 0.75, 0.999)
            ]
        print(json.dumps(result))
    else:
        sys.exit("usage: python -m attnx.bench worker SPEC_JSON")
