"""Codec choice for stored maps: ratio and single-thread encode/decode MB/s on real stored attention.

    python benchmarks/bench_codecs.py STORE.zarr [STORE2.zarr ...]

Reads up to 8 MiB of each store's ``attn`` (float16, float32 or uint8 as stored), compresses it with
each candidate (the bytes-to-bytes stage only; crc32c adds ~4 bytes per chunk) and prints a table; the
store's default (``attnx.store.resolve_codec``) was picked from this.
"""

from __future__ import annotations

import sys
import time

import numcodecs
import numpy as np

import attnx


def candidates(itemsize: int) -> dict:
    b = numcodecs.Blosc
    out = {}
    for cname, levels in (("lz4", (5,)), ("zstd", (1, 3, 5))):
        for level in levels:
            for shuffle, name in ((b.SHUFFLE, "shuffle"), (b.BITSHUFFLE, "bitshuffle"), (b.NOSHUFFLE, "noshuffle")):
                out[f"blosc-{cname}{level}-{name}"] = b(cname=cname, clevel=level, shuffle=shuffle, typesize=itemsize)
    out.update({f"zstd{k}": numcodecs.Zstd(level=k) for k in (1, 3, 9)})
    return out


def main() -> None:
    numcodecs.blosc.set_nthreads(1)
    for path in sys.argv[1:]:
        store = attnx.open_store(path)
        data = np.asarray(
            store.group["attn"][: min(store.commit.attn, (8 << 20) // store.group["attn"].dtype.itemsize)]
        )
        raw = data.view(np.uint8)
        print(f"\n{path}: {store.dtype}, {raw.nbytes / 1e6:.1f} MB sample\n")
        print("| codec | ratio | encode MB/s | decode MB/s |\n|---|---:|---:|---:|")
        for name, codec in candidates(data.itemsize).items():
            t = time.perf_counter()
            enc = codec.encode(raw)
            te = time.perf_counter() - t
            t = time.perf_counter()
            codec.decode(enc)
            td = time.perf_counter() - t
            ratio, enc_mbs, dec_mbs = raw.nbytes / len(enc), raw.nbytes / te / 1e6, raw.nbytes / td / 1e6
            print(f"| {name} | {ratio:.3f} | {enc_mbs:,.0f} | {dec_mbs:,.0f} |")


if __name__ == "__main__":
    main()
