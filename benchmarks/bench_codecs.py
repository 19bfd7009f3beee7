"""Stored dtype x codec on real attention maps: bits per value, max error, entropy, encode/decode MB/s.

    python benchmarks/bench_codecs.py --store ewt=ewt.f32.zarr --store gum=gum.f32.zarr \\
        --store qnli=qnli.f32.zarr --store long=long.f32.zarr --chunks 4 --repeats 3 --threads 2

Each ``--store`` is a float32 store made by ``attnx extract --dtype float32`` (the exact probabilities).
From each, ``--chunks`` runs of whole records of about ``--chunk-values`` values each (4 Mi values = one
8 MiB float16 store chunk) are taken evenly spaced across the WHOLE store (physical order is sorted by
length inside each window, so the first MiB holds only the shortest sentences). For every stored dtype of
:mod:`attnx.stored_dtypes` the chunks are encoded (float32 -> stored), then every codec compresses each chunk
separately, as the store would.

Per dtype x codec it records: bits per value (compressed bytes * 8 / values; the crc32c checksum adds
4 bytes per chunk, not counted), the max abs error against the float32 maps (and the stated bound), the
order-0 entropy of the stored values (bits/value: what an ideal memoryless coder reaches), and encode and
decode speed on one thread and on ``--threads`` threads (a pool of threads each handling whole chunks, blosc
kept at one internal thread; blosc and zstd release the GIL). Speeds are MB/s of the uncompressed STORED
array (so float16 and q10 count 2 bytes a value, uint8 1) and Mvalues/s. ``--repeats`` rounds run
interleaved (every codec once per round); medians and [min, max] are reported. ``quantise`` is the numpy
float32 -> stored step alone; ``dequantise`` stored -> float32.

Writes ``benchmarks/results/codecs.json`` (with machine load, lscpu flags and package versions) and prints
markdown tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numcodecs
import numpy as np

import attnx
from attnx import stored_dtypes

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float16", "uint8", "q9", "q10", "q11", "q12", "q16")


def candidates() -> dict[str, object]:
    """name -> factory(itemsize) of a numcodecs codec (the bytes stage of the zarr pipeline)."""
    B = numcodecs.Blosc
    out: dict[str, object] = {
        "blosc-lz4-bit-5": lambda s: B(cname="lz4", clevel=5, shuffle=B.BITSHUFFLE, typesize=s),
        "blosc-lz4-byte-5": lambda s: B(cname="lz4", clevel=5, shuffle=B.SHUFFLE, typesize=s),
        "blosc-zstd-byte-3": lambda s: B(cname="zstd", clevel=3, shuffle=B.SHUFFLE, typesize=s),
    }
    for level in (1, 3, 5, 9):
        out[f"blosc-zstd-bit-{level}"] = lambda s, lv=level: B(
            cname="zstd", clevel=lv, shuffle=B.BITSHUFFLE, typesize=s
        )
    for level in (1, 3, 9):
        out[f"zstd-{level}"] = lambda s, lv=level: numcodecs.Zstd(level=lv)
    try:  # pcodec (binning + tANS entropy coding of numeric sequences); numcodecs wraps pcodec 0.3.x
        from numcodecs.pcodec import PCodec

        out["pcodec-8"] = lambda s: PCodec(level=8, delta_spec="none")
    except ImportError as exc:
        print(f"pcodec not available ({exc}); install 'pcodec>=0.3,<0.4' to include it", file=sys.stderr)
    return out


def sample_chunks(path: str, n_chunks: int, chunk_values: int) -> tuple[list[np.ndarray], dict]:
    """``n_chunks`` record-aligned runs of ~``chunk_values`` float32 values, evenly spaced over the store."""
    store = attnx.open_store(path)
    if store.dtype != "float32":
        raise SystemExit(f"{path}: stored as {store.dtype}; make it with 'attnx extract --dtype float32'")
    blocks = list(store.blocks(max_bytes=chunk_values * 4))
    picks = np.unique(np.linspace(0, len(blocks) - 1, n_chunks).round().astype(int))
    chunks = [np.ascontiguousarray(blocks[i].maps_f32()) for i in picks]
    lengths = np.concatenate([blocks[i].lengths for i in picks])
    all_len = np.concatenate([b.lengths for b in blocks])
    info = {
        "path": path,
        "records": int(len(all_len)),
        "values": int(sum(len(b.attn) for b in blocks)),
        "mean_length": float(all_len.mean()),
        "max_length": int(all_len.max()),
        "sampled_blocks": [int(i) for i in picks],
        "of_blocks": len(blocks),
        "sampled_records": int(len(lengths)),
        "sampled_values": int(sum(len(c) for c in chunks)),
        "sampled_length_min_mean_max": [int(lengths.min()), float(lengths.mean()), int(lengths.max())],
    }
    return chunks, info


def entropy0(stored: list[np.ndarray]) -> float:
    """Order-0 entropy (bits/value) of the stored values (float16 read as its 16-bit patterns)."""
    counts = np.zeros(1 << 16, np.int64)
    for s in stored:
        v = s.view(np.uint16) if s.itemsize == 2 else s.view(np.uint8)
        counts[: 1 << (8 * s.itemsize)] += np.bincount(v, minlength=1 << (8 * s.itemsize))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _timed(fn, items: list, threads: int) -> tuple[float, list]:
    t = time.perf_counter()
    if threads <= 1:
        out = [fn(x) for x in items]
    else:
        with ThreadPoolExecutor(threads) as pool:
            out = list(pool.map(fn, items))
    return time.perf_counter() - t, out


def _stat(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def machine() -> dict:
    flags = ""
    model = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Flags:"):
                flags = line.split(":", 1)[1].strip()
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        flags = f"lscpu failed: {exc}"
    import zarr

    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "lscpu_flags": flags,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numcodecs": numcodecs.__version__,
        "zarr": zarr.__version__,
        "blosc": str(getattr(numcodecs.blosc, "VERSION_STRING", "")),
    }


def run(stores: dict[str, str], n_chunks: int, chunk_values: int, repeats: int, threads: int) -> dict:
    numcodecs.blosc.set_nthreads(1)
    numcodecs.blosc.use_threads = False
    codecs = candidates()
    corpora, rows = {}, []
    load_before = os.getloadavg()
    started = time.time()
    for corpus, path in stores.items():
        chunks, corpora[corpus] = sample_chunks(path, n_chunks, chunk_values)
        n_values = sum(len(c) for c in chunks)
        print(f"{corpus}: {corpora[corpus]}", file=sys.stderr)
        for name in DTYPES:
            d = stored_dtypes.stored_dtype(name)
            q_times, d_times, stored, err = [], [], [], 0.0
            for _ in range(repeats):
                tq, stored = _timed(lambda c, n=name: stored_dtypes.encode(c, n), chunks, 1)
                td, dec = _timed(lambda s, n=name: stored_dtypes.decode(s, n), stored, 1)
                q_times.append(tq)
                d_times.append(td)
            err = max(float(np.abs(a - b).max()) for a, b in zip(dec, chunks, strict=True))
            del dec
            raw = [s.view(np.uint8) for s in stored]
            nbytes = sum(r.nbytes for r in raw)
            base = {
                "corpus": corpus,
                "dtype": name,
                "values": n_values,
                "raw_bytes": nbytes,
                "max_abs_error": err,
                "stated_bound": d.max_abs_error,
                "entropy0_bits": entropy0(stored),
                "quantise_mvals": _stat([n_values / t / 1e6 for t in q_times]),
                "dequantise_mvals": _stat([n_values / t / 1e6 for t in d_times]),
            }
            results: dict[str, dict] = {c: {"enc1": [], "dec1": [], "encN": [], "decN": []} for c in codecs}
            sizes: dict[str, int] = {}
            for _ in range(repeats):  # interleaved: every codec once per round
                for cname, factory in codecs.items():
                    if cname.startswith("pcodec") and name == "uint8":
                        continue  # pcodec has no 8-bit types
                    codec = factory(d.storage.itemsize)
                    src = stored if cname.startswith("pcodec") else raw
                    te, enc = _timed(codec.encode, src, 1)
                    tdd, back = _timed(codec.decode, enc, 1)
                    ten, _ = _timed(codec.encode, src, threads)
                    tdn, _ = _timed(codec.decode, enc, threads)
                    if cname not in sizes:
                        for a, b in zip(back, src, strict=True):
                            if not np.array_equal(np.frombuffer(a, np.uint8), b.view(np.uint8)):
                                raise SystemExit(f"{cname} did not round-trip {name}")
                        sizes[cname] = sum(len(e) for e in enc)
                    r = results[cname]
                    r["enc1"].append(te)
                    r["dec1"].append(tdd)
                    r["encN"].append(ten)
                    r["decN"].append(tdn)
            for cname, r in results.items():
                if cname not in sizes:
                    continue
                row = dict(base, codec=cname, compressed_bytes=sizes[cname], bits_per_value=8 * sizes[cname] / n_values)
                for key, label in (
                    ("enc1", "encode"),
                    ("dec1", "decode"),
                    ("encN", "encode_mt"),
                    ("decN", "decode_mt"),
                ):
                    row[f"{label}_mbs"] = _stat([nbytes / t / 1e6 for t in r[key]])
                    row[f"{label}_mvals"] = _stat([n_values / t / 1e6 for t in r[key]])
                rows.append(row)
            print(f"  {corpus} {name}: done ({time.time() - started:.0f} s)", file=sys.stderr)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": machine(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "seconds": time.time() - started,
        "repeats": repeats,
        "threads": threads,
        "chunk_values": chunk_values,
        "corpora": corpora,
        "rows": rows,
    }


def summarise(res: dict) -> list[dict]:
    """All corpora together: per dtype x codec, bytes summed, speeds as the median over corpora of medians."""
    out = []
    keys = sorted({(r["dtype"], r["codec"]) for r in res["rows"]}, key=lambda k: (DTYPES.index(k[0]), k[1]))
    f16 = {
        r["corpus"]: r["compressed_bytes"]
        for r in res["rows"]
        if r["dtype"] == "float16" and r["codec"] == "blosc-lz4-bit-5"
    }
    for name, codec in keys:
        rs = [r for r in res["rows"] if r["dtype"] == name and r["codec"] == codec]
        values = sum(r["values"] for r in rs)
        comp = sum(r["compressed_bytes"] for r in rs)
        out.append(
            {
                "dtype": name,
                "codec": codec,
                "bits_per_value": 8 * comp / values,
                "of_float16_store": comp / sum(f16[r["corpus"]] for r in rs) if f16 else None,
                "per_corpus_bits": {r["corpus"]: round(r["bits_per_value"], 3) for r in rs},
                "per_corpus_of_f16": {r["corpus"]: r["compressed_bytes"] / f16[r["corpus"]] for r in rs},
                "max_abs_error": max(r["max_abs_error"] for r in rs),
                "stated_bound": rs[0]["stated_bound"],
                "entropy0_bits": sum(r["entropy0_bits"] * r["values"] for r in rs) / values,
                **{
                    k: statistics.median(r[k]["median"] for r in rs)
                    for k in ("encode_mbs", "decode_mbs", "encode_mt_mbs", "decode_mt_mbs", "decode_mvals")
                },
                "decode_spread": [min(r["decode_mbs"]["min"] for r in rs), max(r["decode_mbs"]["max"] for r in rs)],
            }
        )
    return out


def markdown(res: dict, summary: list[dict]) -> str:
    t = res["threads"]
    lines = [
        f"{res['date']}, {res['machine']['cpu']} ({res['machine']['cpus']} CPUs), load {res['load_before']} -> "
        f"{res['load_after']}; {res['repeats']} interleaved repeats, medians; chunks of {res['chunk_values']:,} "
        f"values; corpora: {', '.join(res['corpora'])}",
        "",
        f"| dtype | codec | bits/value | of float16 store | max abs error | entropy0 | enc MB/s 1t | enc MB/s {t}t "
        f"| dec MB/s 1t [min-max] | dec MB/s {t}t | dec Mval/s 1t |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['dtype']} | {s['codec']} | {s['bits_per_value']:.2f} | {100 * s['of_float16_store']:.1f}% "
            f"| {s['max_abs_error']:.3g} | {s['entropy0_bits']:.2f} "
            f"| {s['encode_mbs']:,.0f} | {s['encode_mt_mbs']:,.0f} "
            f"| {s['decode_mbs']:,.0f} [{s['decode_spread'][0]:,.0f}-{s['decode_spread'][1]:,.0f}] "
            f"| {s['decode_mt_mbs']:,.0f} | {s['decode_mvals']:,.0f} |"
        )
    lines += ["", "Per corpus: bits/value (and % of the float16 store) with each dtype's default codec:", ""]
    corpora = list(res["corpora"])
    lines += ["| dtype | codec | " + " | ".join(corpora) + " |", "|---|---|" + "---:|" * len(corpora)]
    for s in summary:
        d = stored_dtypes.DTYPES[s["dtype"]]
        default = {"blosc-lz4": f"blosc-lz4-bit-{d.level}", "blosc-zstd": f"blosc-zstd-bit-{d.level}"}.get(
            d.codec, f"{d.codec}-{d.level}"
        )
        if s["codec"] == default:
            lines.append(
                f"| {s['dtype']} | {s['codec']} | "
                + " | ".join(f"{s['per_corpus_bits'][c]:.2f} ({100 * s['per_corpus_of_f16'][c]:.1f}%)" for c in corpora)
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", action="append", help="NAME=PATH of a float32 store (repeatable)")
    ap.add_argument("--from-json", help="only print the tables of an earlier results file")
    ap.add_argument("--chunks", type=int, default=4, help="chunks sampled per store, evenly spaced")
    ap.add_argument("--chunk-values", type=int, default=4 << 20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codecs.json"))
    args = ap.parse_args()
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
        print(markdown(res, summarise(res)))
        return
    if not args.store:
        ap.error("give --store NAME=PATH (or --from-json)")
    stores = dict(s.split("=", 1) for s in args.store)
    res = run(stores, args.chunks, args.chunk_values, args.repeats, args.threads)
    res["summary"] = summarise(res)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(markdown(res, res["summary"]))


if __name__ == "__main__":
    main()
