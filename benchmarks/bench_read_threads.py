"""How fast can stored maps be decoded on several threads with zarr 3.1? (issue 12, item 4)

    python benchmarks/bench_read_threads.py --store qnli.f32.zarr --chunks 16 --repeats 3

Builds, from a float32 store's real maps, one Zarr v3 array per stored dtype (float16 with its default
blosc-lz4 pipeline, q10 with blosc-zstd; 8 MiB float16 chunks = 4 Mi values, crc32c like the store) and
reads it all back in each mode, each run in a FRESH process (zarr creates its thread pool once per
process, so ``threading.max_workers`` only counts if set before the first read):

- ``serial``: zarr config ``async.concurrency=1``, ``threading.max_workers=1``; reads of 8 chunks.
- ``zarr-default``: zarr's defaults (concurrency 10; asyncio's default pool, min(32, cpus + 4) threads);
  reads of 8 chunks, so zarr decodes the 8 chunks of one read concurrently.
- ``zarr-2``: ``threading.max_workers=2`` (one per core here), concurrency 2.
- ``pool-2``: two reader threads, each reading whole chunks (zarr kept serial inside), in order, through
  :func:`attnx.threads.ordered_map` (what the store reader can do itself).
- ``+f32``: the same, with the stored -> float32 conversion (what the kernels consume) done per chunk in the
  worker that decoded it instead of afterwards on the consumer thread.

Reported: GB/s of uncompressed stored bytes (and of float32 output for ``+f32``), median and [min, max] of
``--repeats`` interleaved rounds, with machine load. Writes ``benchmarks/results/read_threads.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 4 << 20
MODES = ("serial", "zarr-default", "zarr-2", "pool-2", "serial+f32", "zarr-default+f32", "pool-2+f32")
DTYPES = ("float16", "q10")


def build(store_path: str, out: Path, n_chunks: int) -> dict:
    import zarr

    import attnx
    from attnx import stored_dtypes

    src = attnx.open_store(store_path)
    values = []
    have = 0
    for block in src.blocks():
        values.append(block.maps_f32())
        have += len(values[-1])
        if have >= n_chunks * CHUNK:
            break
    p = np.concatenate(values)[: n_chunks * CHUNK]
    sizes = {}
    for name in DTYPES:
        d = stored_dtypes.stored_dtype(name)
        arr = zarr.create_array(
            str(out / name),
            shape=p.shape,
            chunks=(CHUNK,),
            dtype=d.storage,
            fill_value=0,
            **stored_dtypes.zarr_codecs(d.codec, name, d.level),
        )
        arr[:] = stored_dtypes.encode(p, name)
        sizes[name] = sum(f.stat().st_size for f in (out / name).rglob("*") if f.is_file())
    return {"values": int(len(p)), "disk_bytes": sizes}


def worker(mode: str, path: str, name: str) -> dict:
    """One timed full read in this (fresh) process; prints nothing, returns seconds."""
    import zarr

    from attnx import stored_dtypes
    from attnx.threads import ordered_map

    base = mode.split("+")[0]
    if base in ("serial", "pool-2"):
        zarr.config.set({"async.concurrency": 1, "threading.max_workers": 1})
    elif base == "zarr-2":
        zarr.config.set({"async.concurrency": 2, "threading.max_workers": 2})
    arr = zarr.open_array(path, mode="r")
    n = arr.shape[0] // CHUNK
    f32 = mode.endswith("+f32")

    def read(c0: int, c1: int) -> np.ndarray:
        out = arr[c0 * CHUNK : c1 * CHUNK]
        return stored_dtypes.decode(out, name) if f32 else out

    read(0, 1)  # warm: imports, thread pool, page cache
    t = time.perf_counter()
    if base == "pool-2":
        total = sum(x.nbytes for x in ordered_map(lambda c: read(c, c + 1), range(n), threads=2))
    else:
        total = sum(read(c, min(c + 8, n)).nbytes for c in range(0, n, 8))
    return {"seconds": time.perf_counter() - t, "bytes_out": total}


def dequantise_speed(values: np.ndarray, repeats: int) -> list[dict]:
    """stored -> float32 alone, GB/s of stored bytes: numpy reference vs attnx.stored_dtypes.decode, 1 and 2 threads."""
    from attnx import stored_dtypes
    from attnx.threads import ordered_map

    rows = []
    for name in DTYPES:
        chunks = [stored_dtypes.encode(values[i : i + CHUNK], name) for i in range(0, len(values), CHUNK)]
        nbytes = sum(c.nbytes for c in chunks)
        stored_dtypes.decode(chunks[0], name)  # compile
        for label, fn, threads in (
            ("numpy decode_ref", stored_dtypes.decode_ref, 1),
            ("decode (numba)", stored_dtypes.decode, 1),
            ("decode (numba), ordered_map 2 threads", stored_dtypes.decode, 2),
        ):
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in ordered_map(lambda c, f=fn, n=name: f(c, n), chunks, threads=threads):
                    pass
                ts.append(time.perf_counter() - t)
            gbs = [nbytes / t / 1e9 for t in ts]
            rows.append(
                {"dtype": name, "mode": label, "stored_gbs": statistics.median(gbs), "spread": [min(gbs), max(gbs)]}
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="float32 store to take real maps from")
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "read_threads.json"))
    ap.add_argument("--dequantise-only", action="store_true", help="only time stored -> float32")
    ap.add_argument("--worker", nargs=3, metavar=("MODE", "PATH", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    load_before = os.getloadavg()
    if args.dequantise_only:
        import attnx

        block = next(iter(attnx.open_store(args.store).blocks(max_bytes=args.chunks * CHUNK * 4)))
        rows = dequantise_speed(block.maps_f32()[: args.chunks * CHUNK], args.repeats)
        print(f"load {load_before} -> {os.getloadavg()}\n\n| dtype | stored -> float32 | GB/s of stored bytes |")
        print("|---|---|---:|")
        for r in rows:
            print(f"| {r['dtype']} | {r['mode']} | {r['stored_gbs']:.2f} [{r['spread'][0]:.2f}-{r['spread'][1]:.2f}] |")
        return
    with tempfile.TemporaryDirectory(prefix="attnx-read-threads-") as tmp:
        info = build(args.store, Path(tmp), args.chunks)
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for name in DTYPES:
                for mode in MODES:
                    cmd = [sys.executable, __file__, "--worker", mode, str(Path(tmp) / name), name]
                    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
                    times.setdefault(f"{name} {mode}", []).append(r["seconds"])
    rows = []
    for key, ts in times.items():
        name, mode = key.split(" ")
        stored = info["values"] * (2 if name in ("float16", "q10") else 4)
        gbs = [stored / t / 1e9 for t in ts]
        rows.append({"dtype": name, "mode": mode, "stored_gbs": statistics.median(gbs), "spread": [min(gbs), max(gbs)]})
    res = {
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "repeats": args.repeats,
        **info,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"{info['values']:,} values in {args.chunks} chunks; load {load_before} -> {res['load_after']}\n")
    print("| dtype | mode | GB/s of stored bytes [min-max] |\n|---|---|---:|")
    for r in rows:
        print(f"| {r['dtype']} | {r['mode']} | {r['stored_gbs']:.2f} [{r['spread'][0]:.2f}-{r['spread'][1]:.2f}] |")


if __name__ == "__main__":
    main()
