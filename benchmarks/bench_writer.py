"""Store writer throughput on synthetic records (no model), against ceilings measured in the same run.

Every setting runs in its own process (zarr sizes its codec thread pool once per process), repeated and
interleaved with the ceilings; the table gives medians with min..max. Records look like MiniLM's: 6 x 12
float16 maps per record, lengths lognormal around 25 tokens, softmax rows with a [CLS] sink, so the codec
sees realistic bytes. Ceilings:

* codec: compress (blosc-lz4 + bit-shuffle, crc32c) and checksum the same chunks with T threads, no storage;
* disk: write the compressed chunk bytes as files (one per chunk, as Icechunk does) with T threads, then
  fsync, in raw-attention GB/s (compressed MB/s times the compression ratio).

    python benchmarks/bench_writer.py --records 4000 --repeat 3 --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
LAYERS, HEADS, CHUNK = 6, 12, 4 << 20


def synthetic_batches(records: int, batch: int = 64, pool: int = 400, seed: int = 0) -> list:
    """``records`` MiniLM-like records in batches; ``pool`` distinct records replayed with new ids."""
    from attnx.store import StoredBatch

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(25) - 0.1, 0.45, pool).astype(np.int64), 3, 128)
    maps = []
    for l in lengths:
        logits = rng.standard_normal((LAYERS * HEADS, l, l)) * 3.0
        logits[..., 0] += 2.5  # a [CLS] sink, as real heads have
        p = np.exp(logits - logits.max(-1, keepdims=True))
        maps.append((p / p.sum(-1, keepdims=True)).astype(np.float16).ravel())
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


def child_writer(args: argparse.Namespace) -> dict:
    from attnx.store import StoreWriter, WriterConfig, open_store

    batches = synthetic_batches(args.records)
    out = Path(args.workdir) / "s.zarr"
    meta = {
        "layers": list(range(LAYERS)),
        "heads": list(range(HEADS)),
        "model": {"name": "synthetic", "layers": LAYERS, "heads": HEADS},
    }
    t0 = time.perf_counter()
    w = StoreWriter.create(
        out,
        meta,
        [f"t{k}" for k in range(30000)],
        "float16",
        "auto",
        CHUNK,
        1 << 16,
        1 << 20,
        config=WriterConfig(commit_bytes=args.commit_mb << 20, commit_seconds=1e9, flush_chunks=args.flush_chunks),
    )
    for b in batches:
        w.append(b)
    w.finish()
    seconds = time.perf_counter() - t0
    store = open_store(out)
    raw = sum(b.attn.nbytes for b in batches)
    meta_bytes = sum(f.stat().st_size for d in ("snapshots", "manifests") for f in (out / d).iterdir())
    return {
        "seconds": seconds,
        "records": args.records,
        "raw_bytes": raw,
        "disk_bytes": store.payload_nbytes_stored(),
        "commits": len(store.history()) - 1,
        "metadata_bytes": meta_bytes,
    }


def child_ceilings(args: argparse.Namespace) -> dict:
    import google_crc32c  # noqa: F401 - what zarr's crc32c codec computes with
    from numcodecs import Blosc
    from zarr.codecs import Crc32cCodec  # noqa: F401 - the checksum codec the store uses

    flat = np.concatenate([b.attn for b in synthetic_batches(args.records)])
    chunks = [flat[i : i + CHUNK] for i in range(0, len(flat), CHUNK)]
    codec = Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE, typesize=2)

    def encode(c: np.ndarray) -> bytes:
        data = codec.encode(c)
        google_crc32c.value(data)
        return data

    with ThreadPoolExecutor(args.threads) as pool:
        t0 = time.perf_counter()
        encoded = list(pool.map(encode, chunks))
        codec_s = time.perf_counter() - t0
    d = Path(args.workdir) / "disk"
    d.mkdir()

    def write(k: int) -> None:
        (d / f"c{k}").write_bytes(encoded[k])

    with ThreadPoolExecutor(args.threads) as pool:
        t0 = time.perf_counter()
        list(pool.map(write, range(len(encoded))))
        os.sync()
        disk_s = time.perf_counter() - t0
    compressed = sum(len(e) for e in encoded)
    return {"raw_bytes": flat.nbytes, "codec_seconds": codec_s, "disk_seconds": disk_s, "compressed": compressed}


def run_child(mode: str, args: argparse.Namespace, threads: int, flush_chunks: int) -> dict:
    work = tempfile.mkdtemp(prefix="attnx-bw-", dir=args.tmp)
    env = {**os.environ, "ZARR_THREADING__MAX_WORKERS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--records",
        str(args.records),
        "--workdir",
        work,
        "--threads",
        str(threads),
        "--flush-chunks",
        str(flush_chunks),
        "--commit-mb",
        str(args.commit_mb),
    ]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"child {mode} failed:\n{exc.stderr}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    flags = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "")
        flags = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Flags")), "")
    except OSError:
        model = platform.processor()
    keep = [f for f in flags.split() if f.startswith(("avx", "amx", "sse4", "f16c", "fma"))]
    return {"cpu": model, "cores": os.cpu_count(), "flags": keep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="zarr codec threads to try, comma-separated")
    ap.add_argument("--commit-mb", type=int, default=128)
    ap.add_argument("--tmp", default=None, help="folder for the stores (default: the system temp folder)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "writer.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--flush-chunks", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.threads = int(args.threads)
        result = child_writer(args) if args.child == "writer" else child_ceilings(args)
        print(json.dumps(result))
        return

    threads = [int(t) for t in args.threads.split(",")]
    settings = [("writer", t, max(1, t)) for t in threads] + [("ceilings", t, 1) for t in threads]
    runs: dict[tuple, list[dict]] = {s: [] for s in settings}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeat):  # interleaved: every setting once per round
        for s in settings:
            runs[s].append(run_child(s[0], args, s[1], s[2]))
        load.append(os.getloadavg()[0])

    def stats(values: list[float]) -> dict:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    rows = []
    for t in threads:
        w = runs[("writer", t, max(1, t))]
        c = runs[("ceilings", t, 1)]
        gbs = stats([r["raw_bytes"] / r["seconds"] / 1e9 for r in w])
        codec = stats([r["raw_bytes"] / r["codec_seconds"] / 1e9 for r in c])
        disk = stats([r["raw_bytes"] / r["disk_seconds"] / 1e9 for r in c])  # raw-equivalent GB/s
        rows.append(
            {
                "threads": t,
                "records_per_s": stats([r["records"] / r["seconds"] for r in w]),
                "raw_gb_per_s": gbs,
                "codec_ceiling_gb_per_s": codec,
                "disk_ceiling_gb_per_s": disk,
                "fraction_of_lower_ceiling": gbs["median"] / min(codec["median"], disk["median"]),
                "compression_ratio": w[0]["raw_bytes"] / max(1, w[0]["disk_bytes"]),
                "commits": w[0]["commits"],
                "metadata_bytes": w[0]["metadata_bytes"],
            }
        )
    result = {
        "benchmark": "writer",
        "records": args.records,
        "repeat": args.repeat,
        "commit_mb": args.commit_mb,
        "machine": machine(),
        "load_1min": load,
        "rows": rows,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"writer, {args.records} synthetic MiniLM-like records ({rows[0]['compression_ratio']:.2f}x compressible), "
        f"{args.repeat} interleaved rounds, median [min..max]; load {min(load):.1f}-{max(load):.1f}"
    )
    print("| threads | records/s | GB/s raw | codec ceiling GB/s | disk ceiling GB/s | of lower ceiling | commits |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:

        def f(s: dict, p: int = 2) -> str:
            return f"{s['median']:.{p}f} [{s['min']:.{p}f}..{s['max']:.{p}f}]"

        print(
            f"| {r['threads']} | {f(r['records_per_s'], 0)} | {f(r['raw_gb_per_s'])} | "
            f"{f(r['codec_ceiling_gb_per_s'])} | {f(r['disk_ceiling_gb_per_s'])} | "
            f"{r['fraction_of_lower_ceiling']:.0%} | {r['commits']} |"
        )


if __name__ == "__main__":
    main()
