"""Store writer throughput on synthetic records (no model), against ceilings measured in the same run.

Every measurement runs in its own process, and the rounds interleave every setting (ceilings, the writer on 1
and 2 I/O threads, MiniLM and BERT-base shapes); the table gives medians with [min..max]. Records are float16
softmax maps shaped like the model's (6 x 12 or 12 x 12 per record, lengths lognormal around 25 tokens, rows
with a [CLS] sink), so the codec sees realistic bytes. Per setting:

* codec ceiling: the store's own payload codec (blosc-lz4 + bit-shuffle + crc32c, through the same zarr codec
  objects the writer runs) over the same 8 MiB chunks on T threads, no storage: the faster of two passes after
  a first that faults its output buffers in (the first pass alone read 0.7-1.5 GB/s on one thread, run to run);
* disk ceiling: those compressed chunks written as files the way Icechunk's local storage writes them (a
  temporary file renamed into place, no fsync), in raw-attention GB/s, on as many threads as the machine has
  cores: Icechunk writes chunk files on its own threads (one per core), whatever the I/O threads (the file also
  keeps the figure on T threads);
* writer: ``StoreWriter`` with ``io_threads`` = T (``ATTNX_IO_THREADS``), from the first append to the end of
  ``finish`` (steady state; creating the store is start-up, reported apart), raw GB/s, and the process's CPU
  time per GB (core-seconds per GB).

Every child process sets glibc's heap the way the ``attnx`` command does (``--heap kept``: freed pages kept for
reuse, :func:`attnx.memory.keep_freed_heap_pages`); ``--heap default`` measures glibc's own settings, which a
library caller has unless it asks (with them every freshly allocated 8 MB chunk buffer faults its pages in again).

Targets (issue 19): on one I/O thread >= 80% of the lower of the two ceilings; two I/O threads >= 1.7x one.

    python benchmarks/bench_writer.py                 # ~256 MB per setting, 3 rounds, writes results/writer_io.json
    python benchmarks/bench_writer.py --mb 64 --repeat 3 --out /tmp/w.json     # a quick check
    python benchmarks/bench_writer.py --tmp /dev/shm --out benchmarks/results/writer_io_tmpfs.json  # no disk
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 4 << 20
SHAPES = {"minilm": (6, 12), "bert-base": (12, 12)}
CORES = len(os.sched_getaffinity(0))


def synthetic_batches(mb: float, layers: int, heads: int, batch: int = 64, pool: int = 400, seed: int = 0) -> list:
    """About ``mb`` MB of float16 model-shaped records in batches; ``pool`` distinct records replayed with new
    ids."""
    from attnx.store import StoredBatch

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(25) - 0.1, 0.45, pool).astype(np.int64), 3, 128)
    maps = []
    for l in lengths:
        logits = rng.standard_normal((layers * heads, l, l)) * 3.0
        logits[..., 0] += 2.5  # a [CLS] sink, as real heads have
        p = np.exp(logits - logits.max(-1, keepdims=True))
        maps.append((p / p.sum(-1, keepdims=True)).astype(np.float16).ravel())
    per_record = float(np.mean([m.nbytes for m in maps]))
    records = max(batch, int(mb * 1e6 / per_record))
    out = []
    for s in range(0, records, batch):
        idx = np.arange(s, min(records, s + batch)) % pool
        ls = lengths[idx]
        t = int(ls.sum())
        out.append(
            StoredBatch(
                attn=np.concatenate([maps[k] for k in idx]),
                input_id=np.arange(s, s + len(idx), dtype=np.int64),
                length=ls.astype(np.int32),
                len_a=ls.astype(np.int32),
                line=np.arange(s, s + len(idx), dtype=np.int64) + 1,
                truncated=np.zeros(len(idx), bool),
                tokens={
                    "ids": rng.integers(1000, 30000, t).astype(np.int32),
                    "segment": np.zeros(t, np.int8),
                    "special": np.zeros(t, bool),
                    "punct": np.zeros(t, bool),
                    "word": np.arange(t, dtype=np.int32) % 40,
                },
            )
        )
    return out


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _thread_cpu() -> dict[str, dict[str, float]]:
    """User and system CPU seconds of this process's threads, grouped: Python's threads (the writer thread, the
    I/O threads, zarr's event loop) and Icechunk's tokio threads (its storage writes), by the kernel's name."""
    import psutil

    out: dict[str, dict[str, float]] = {}
    for t in psutil.Process().threads():
        try:
            comm = Path(f"/proc/self/task/{t.id}/comm").read_text().strip()
        except OSError:
            comm = ""
        group = "icechunk (tokio)" if comm.startswith("tokio") else "python threads"
        g = out.setdefault(group, {"user": 0.0, "system": 0.0})
        g["user"] += t.user_time
        g["system"] += t.system_time
    return out


def child_writer(args: argparse.Namespace) -> dict:
    from attnx.store import StoreWriter, WriterConfig, open_store

    layers, heads = SHAPES[args.shape]
    batches = synthetic_batches(args.mb, layers, heads)
    out = Path(args.workdir) / "s.zarr"
    meta = {
        "layers": list(range(layers)),
        "heads": list(range(heads)),
        "model": {"name": "synthetic", "layers": layers, "heads": heads},
    }
    config = WriterConfig(commit_bytes=args.commit_mb << 20, commit_seconds=1e9, io_threads=args.threads)
    t0 = time.perf_counter()
    w = StoreWriter.create(
        out, meta, [f"t{k}" for k in range(30000)], "float16", "auto", CHUNK, 1 << 16, 1 << 20, config=config
    )
    # steady state from here: appends, commits and the final commit; the store's creation is start-up
    threads0 = _thread_cpu()
    c1, t1, f1 = _cpu_s(), time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for b in batches:
        w.append(b)
    w.commit_now()
    threads1 = _thread_cpu()  # before finish: its I/O threads end there
    w.finish()
    t2, c2, f2 = time.perf_counter(), _cpu_s(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    store = open_store(out)
    raw = sum(b.attn.nbytes for b in batches)
    return {
        "seconds": t2 - t1,
        "startup_seconds": t1 - t0,
        "cpu_seconds": c2 - c1,
        "minor_page_faults": f2 - f1,
        "records": sum(len(b.input_id) for b in batches),
        "raw_bytes": raw,
        "disk_bytes": store.payload_nbytes_stored(),
        "commits": len(store.history()) - 1,
        "thread_cpu_seconds": {
            group: {k: threads1[group][k] - threads0.get(group, {}).get(k, 0.0) for k in ("user", "system")}
            for group in threads1
        },
    }


def child_ceilings(args: argparse.Namespace) -> dict:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.buffer.cpu import NDBuffer

    from attnx.store.layout import codecs, resolve_codec

    layers, heads = SHAPES[args.shape]
    flat = np.concatenate([b.attn for b in synthetic_batches(args.mb, layers, heads)])
    chunks = [flat[i : i + CHUNK] for i in range(0, len(flat) - CHUNK + 1, CHUNK)]
    codec, level = resolve_codec("auto", "float16")
    chain = codecs(codec, np.float16, level)
    pipeline = [chain["serializer"], *chain["compressors"]]
    from zarr.core.array_spec import ArrayConfig, ArraySpec
    from zarr.core.dtype import Float16

    spec = ArraySpec((CHUNK,), Float16(), 0, ArrayConfig.from_dict({}), default_buffer_prototype())
    pipeline = [c.evolve_from_array_spec(spec) for c in pipeline]

    def encode(c: np.ndarray) -> bytes:
        data = NDBuffer.from_numpy_array(c)
        for step in pipeline:
            data = step._encode_sync(data, spec)
        return data.to_bytes()

    out = {"raw_bytes": len(chunks) * CHUNK * 2}
    for t in sorted({1, 2, CORES}):
        with ThreadPoolExecutor(t) as pool:
            encoded = list(pool.map(encode, chunks))  # warm: the first pass faults its output buffers in
            passes = []
            for _ in range(2):  # a ceiling: the faster of two passes
                del encoded
                t0 = time.perf_counter()
                encoded = list(pool.map(encode, chunks))
                passes.append(time.perf_counter() - t0)
            out[f"codec_seconds_{t}"] = min(passes)
        d = Path(args.workdir) / f"disk{t}"
        d.mkdir()

        def write(k: int, d: Path = d, encoded: list = encoded) -> None:
            tmp = d / f".c{k}.tmp"
            tmp.write_bytes(encoded[k])
            tmp.rename(d / f"c{k}")

        with ThreadPoolExecutor(t) as pool:
            t0 = time.perf_counter()
            list(pool.map(write, range(len(encoded))))
            out[f"disk_seconds_{t}"] = time.perf_counter() - t0
    out["compressed"] = sum(len(e) for e in encoded)
    return out


def run_child(mode: str, args: argparse.Namespace, shape: str, threads: int) -> dict:
    """One measurement in a fresh process; mode ``before``: the writer of the attnx in ``--before``."""
    work = tempfile.mkdtemp(prefix="attnx-bw-", dir=args.tmp)
    src = args.before if mode == "before" else str(ROOT / "src")
    env = {**os.environ, "ATTNX_IO_THREADS": str(threads), "PYTHONPATH": src}
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "writer" if mode == "before" else mode,
        "--mb",
        str(args.mb),
        "--workdir",
        work,
        "--shape",
        shape,
        "--threads",
        str(threads),
        "--commit-mb",
        str(args.commit_mb),
        "--heap",
        args.heap,
    ]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"child {mode} failed:\n{exc.stderr}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """CPU model, cores and ``lscpu`` flags (attnx.benchkit.machine)."""
    sys.path.insert(0, str(ROOT / "src"))
    from attnx.benchkit import machine as bench_machine

    return bench_machine()


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=256, help="MB of raw float16 attention per writer run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shapes", default="minilm,bert-base")
    ap.add_argument("--commit-mb", type=int, default=128)
    ap.add_argument("--tmp", default=None, help="folder for the stores (default: the system temp folder)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "writer_io.json"))
    ap.add_argument(
        "--heap",
        choices=("kept", "default"),
        default="kept",
        help="kept: glibc keeps freed pages for reuse, as every attnx command sets it (attnx.memory."
        "keep_freed_heap_pages); default: glibc's own settings, as a library caller has them [default: kept]",
    )
    ap.add_argument(
        "--before",
        default=None,
        help="an older attnx's src folder: its writer runs in the same rounds (A/B, GB/s ratio per round)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", default="minilm", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.heap == "kept":
            sys.path.insert(0, str(ROOT / "src"))
            from attnx.memory import keep_freed_heap_pages

            if not keep_freed_heap_pages():
                raise SystemExit("--heap kept: glibc's mallopt is not available here")
        result = child_writer(args) if args.child == "writer" else child_ceilings(args)
        print(json.dumps(result))
        return

    shapes = args.shapes.split(",")
    modes = [("ceilings", 2), ("writer", 1), ("writer", 2)]
    if args.before:
        modes += [("before", 1), ("before", 2)]
    settings = [(m, shape, t) for shape in shapes for m, t in modes]
    runs: dict[tuple, list[dict]] = {s: [] for s in settings}
    load = [os.getloadavg()[0]]
    t_start = time.perf_counter()
    for r in range(args.repeat):  # interleaved: every setting once per round
        for s in settings:
            runs[s].append(run_child(s[0], args, s[1], s[2]))
        load.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.repeat} done, {time.perf_counter() - t_start:.0f} s", file=sys.stderr)

    rows = []
    for shape in shapes:
        c = runs[("ceilings", shape, 2)]
        row: dict = {"shape": shape, "layers_heads": list(SHAPES[shape])}
        for t in (1, 2):
            w = runs[("writer", shape, t)]
            row[f"threads_{t}"] = {
                "raw_gb_per_s": stats([x["raw_bytes"] / x["seconds"] / 1e9 for x in w]),
                "records_per_s": stats([x["records"] / x["seconds"] for x in w]),
                "core_s_per_gb": stats([x["cpu_seconds"] / (x["raw_bytes"] / 1e9) for x in w]),
                "startup_s": stats([x["startup_seconds"] for x in w]),
                "page_faults_per_gb": stats([x["minor_page_faults"] / (x["raw_bytes"] / 1e9) for x in w]),
                "codec_ceiling_gb_per_s": stats([x["raw_bytes"] / x[f"codec_seconds_{t}"] / 1e9 for x in c]),
                "disk_ceiling_gb_per_s": stats([x["raw_bytes"] / x[f"disk_seconds_{t}"] / 1e9 for x in c]),
                "commits": w[0]["commits"],
                "thread_core_s_per_gb": {
                    f"{group} {kind}": stats(
                        [x["thread_cpu_seconds"].get(group, {}).get(kind, 0.0) / (x["raw_bytes"] / 1e9) for x in w]
                    )
                    for group in ("python threads", "icechunk (tokio)")
                    for kind in ("user", "system")
                },
            }
            tt = row[f"threads_{t}"]
            # Icechunk writes every chunk file on its own (tokio) threads, one per core, whatever the I/O threads:
            # the disk ceiling that bounds the writer is the one on all cores
            tt["disk_ceiling_gb_per_s"] = stats([x["raw_bytes"] / x[f"disk_seconds_{CORES}"] / 1e9 for x in c])
            tt["disk_ceiling_gb_per_s_on_t_threads"] = stats(
                [x["raw_bytes"] / x[f"disk_seconds_{t}"] / 1e9 for x in c]
            )
            lower = min(tt["codec_ceiling_gb_per_s"]["median"], tt["disk_ceiling_gb_per_s"]["median"])
            tt["fraction_of_lower_ceiling"] = tt["raw_gb_per_s"]["median"] / lower
            if args.before:  # A/B: this tree's writer over --before's, round by round
                b = runs[("before", shape, t)]
                tt["before_raw_gb_per_s"] = stats([x["raw_bytes"] / x["seconds"] / 1e9 for x in b])
                tt["before_core_s_per_gb"] = stats([x["cpu_seconds"] / (x["raw_bytes"] / 1e9) for x in b])
                tt["over_before"] = stats([y["seconds"] / x["seconds"] for x, y in zip(w, b, strict=True)])
        w = runs[("writer", shape, 1)]
        row["compression_ratio"] = w[0]["raw_bytes"] / max(1, w[0]["disk_bytes"])
        row["records"] = w[0]["records"]
        row["two_over_one"] = row["threads_2"]["raw_gb_per_s"]["median"] / row["threads_1"]["raw_gb_per_s"]["median"]
        row["target_one_thread_met"] = row["threads_1"]["fraction_of_lower_ceiling"] >= 0.8
        row["target_two_threads_met"] = row["two_over_one"] >= 1.7
        rows.append(row)
    result = {
        "benchmark": "writer_io",
        "mb_per_run": args.mb,
        "repeat": args.repeat,
        "commit_mb": args.commit_mb,
        "heap": args.heap,
        "tmp": args.tmp or tempfile.gettempdir(),
        "before": args.before,
        "machine": machine(),
        "load_1min": load,
        "seconds": time.perf_counter() - t_start,
        "rows": rows,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"writer, {args.mb:.0f} MB of synthetic float16 maps per run, {args.repeat} interleaved rounds, "
        f"median [min..max]; heap {args.heap}; load {min(load):.1f}-{max(load):.1f}; {result['seconds']:.0f} s"
    )
    print(table(result))
    print(f"result: {args.out}")


def table(result: dict) -> str:
    """The markdown table of a writer_io result (also used by results_sections.py)."""

    def f(s: dict, p: int = 2) -> str:
        return f"{s['median']:.{p}f} [{s['min']:.{p}f}..{s['max']:.{p}f}]"

    ab = bool(result.get("before"))
    lines = [
        "| shape | I/O threads | GB/s raw | codec ceiling GB/s | disk ceiling GB/s | of lower ceiling | "
        "core-s per GB | 2 threads / 1 |" + (" before: GB/s raw | / before, per round |" if ab else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if ab else ""),
    ]
    for r in result["rows"]:
        for t in (1, 2):
            x = r[f"threads_{t}"]
            lines.append(
                f"| {r['shape']} ({r['compression_ratio']:.2f}x) | {t} | {f(x['raw_gb_per_s'])} | "
                f"{f(x['codec_ceiling_gb_per_s'])} | {f(x['disk_ceiling_gb_per_s'])} | "
                f"{x['fraction_of_lower_ceiling']:.0%} | {f(x['core_s_per_gb'])} | "
                + (f"{r['two_over_one']:.2f}x |" if t == 2 else "|")
                + (f" {f(x['before_raw_gb_per_s'])} | {f(x['over_before'])}x |" if ab else "")
            )
    lines += [
        "",
        "| shape | I/O threads | Python threads, user | Python threads, system | Icechunk tokio, user | "
        "Icechunk tokio, system |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        for t in (1, 2):
            split = r[f"threads_{t}"].get("thread_core_s_per_gb")
            if split:
                cells = " | ".join(
                    f"{split[f'{g} {k}']['median']:.2f}"
                    for g in ("python threads", "icechunk (tokio)")
                    for k in ("user", "system")
                )
                lines.append(f"| {r['shape']} | {t} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
