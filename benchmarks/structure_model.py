"""Structure model experiment (issue 12, item 2): sort values by a left/above neighbour context before coding.

Attention maps are smooth in places (broad heads), flat along columns ([CLS]/[SEP] "vertical" heads) and
banded (diagonal heads), so a value is better predicted by its neighbours than by nothing. The transform:
for every element ``(i, j)`` of every ``l x l`` map, its context is ``(bucket(left), bucket(above))`` with
``left = q[i, j-1]``, ``above = q[i-1, j]`` (0 outside the map) and ``bucket(v) = floor(log2(v + 1))``
capped at ``NB - 1``. Encoding stably groups the values by context (a permutation the decoder can undo,
because it computes each context from values it has already decoded) and keeps the ``NB*NB`` group sizes;
any entropy coder then sees ``NB*NB`` runs, each with its own narrow distribution. The ideal gain is the
drop from the order-0 entropy H(q) to the conditional entropy H(q | context).

Kept in the package only if it wins by the issue's rule: >= 15% fewer bytes than the same dtype's best
plain codec, decoding at >= 300 MB/s of stored bytes on one core (codec decode + un-sorting).

    python benchmarks/structure_model.py --store ewt=ewt.f32.zarr --store long=long.f32.zarr --dtype q10

Writes ``benchmarks/results/structure_model.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numba
import numcodecs
import numpy as np

import attnx
from attnx import stored_dtypes

ROOT = Path(__file__).resolve().parents[1]
NB = 12  # buckets per neighbour: log2 buckets 0..10 cover q10; 11 caps larger values


def bucket_table(levels: int, nb: int = NB) -> np.ndarray:
    """(levels+1,) uint8: bucket of each stored value, floor(log2(v+1)) capped at nb-1."""
    v = np.arange(levels + 1, dtype=np.int64)
    return np.minimum(np.floor(np.log2(v + 1)).astype(np.int64), nb - 1).astype(np.uint8)


def map_shapes(lengths: np.ndarray, maps_per_record: int) -> np.ndarray:
    """(M,) int64: side ``l`` of every map in storage order (records back to back, each ``maps_per_record``)."""
    return np.repeat(np.asarray(lengths, np.int64), maps_per_record)


# ---------------------------------------------------------------------------------------------- reference
def contexts_ref(q: np.ndarray, sides: np.ndarray, table: np.ndarray, nb: int = NB) -> np.ndarray:
    """(E,) int64 context of every element, from the ORIGINAL values (numpy, map by map)."""
    out = np.empty(len(q), np.int64)
    pos = 0
    for l in sides:
        m = q[pos : pos + l * l].reshape(l, l).astype(np.int64)
        left = np.zeros_like(m)
        left[:, 1:] = m[:, :-1]
        above = np.zeros_like(m)
        above[1:, :] = m[:-1, :]
        out[pos : pos + l * l] = (table[left] * nb + table[above]).ravel()
        pos += l * l
    return out


def encode_ref(q: np.ndarray, sides: np.ndarray, table: np.ndarray, nb: int = NB) -> tuple[np.ndarray, np.ndarray]:
    """Values grouped by context (stable), and the (nb*nb,) int64 group sizes."""
    ctx = contexts_ref(q, sides, table, nb)
    return q[np.argsort(ctx, kind="stable")], np.bincount(ctx, minlength=nb * nb)


def decode_ref(perm: np.ndarray, counts: np.ndarray, sides: np.ndarray, table: np.ndarray, nb: int = NB) -> np.ndarray:
    """Undo :func:`encode_ref` element by element in plain Python (slow; small inputs only)."""
    cursor = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out = np.empty_like(perm)
    pos = 0
    for l in sides:
        for i in range(l):
            for j in range(l):
                left = int(out[pos + i * l + j - 1]) if j else 0
                above = int(out[pos + (i - 1) * l + j]) if i else 0
                c = int(table[left]) * nb + int(table[above])
                out[pos + i * l + j] = perm[cursor[c]]
                cursor[c] += 1
        pos += l * l
    return out


# -------------------------------------------------------------------------------------------------- numba
@numba.njit(cache=True, nogil=True)
def _ctx(q, k, i, j, l, table, nb):
    left = q[k - 1] if j > 0 else 0
    above = q[k - l] if i > 0 else 0
    return table[left] * nb + table[above]


@numba.njit(cache=True, nogil=True)
def encode(q: np.ndarray, sides: np.ndarray, table: np.ndarray, nb: int = NB) -> tuple[np.ndarray, np.ndarray]:
    """numba twin of :func:`encode_ref`: two passes, count then scatter."""
    counts = np.zeros(nb * nb, np.int64)
    pos = 0
    for l in sides:
        for i in range(l):
            for j in range(l):
                k = pos + i * l + j
                counts[_ctx(q, k, i, j, l, table, nb)] += 1
        pos += l * l
    cursor = np.zeros(nb * nb, np.int64)
    for c in range(1, nb * nb):
        cursor[c] = cursor[c - 1] + counts[c - 1]
    out = np.empty_like(q)
    pos = 0
    for l in sides:
        for i in range(l):
            for j in range(l):
                k = pos + i * l + j
                c = _ctx(q, k, i, j, l, table, nb)
                out[cursor[c]] = q[k]
                cursor[c] += 1
        pos += l * l
    return out, counts


@numba.njit(cache=True, nogil=True)
def decode(perm: np.ndarray, counts: np.ndarray, sides: np.ndarray, table: np.ndarray, nb: int = NB) -> np.ndarray:
    """numba twin of :func:`decode_ref`: one pass, each context read from the values already decoded."""
    cursor = np.zeros(nb * nb, np.int64)
    for c in range(1, nb * nb):
        cursor[c] = cursor[c - 1] + counts[c - 1]
    out = np.empty_like(perm)
    pos = 0
    for l in sides:
        for i in range(l):
            for j in range(l):
                k = pos + i * l + j
                c = _ctx(out, k, i, j, l, table, nb)
                out[k] = perm[cursor[c]]
                cursor[c] += 1
        pos += l * l
    return out


# -------------------------------------------------------------------------------------------------- bench
def entropy(x: np.ndarray) -> float:
    p = np.bincount(x.astype(np.int64)) / len(x)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def conditional_entropy(x: np.ndarray, ctx: np.ndarray) -> float:
    """H(x | ctx) in bits/value, plug-in estimate."""
    key = ctx.astype(np.int64) * (int(x.max()) + 1) + x.astype(np.int64)
    _, joint = np.unique(key, return_counts=True)
    _, marg = np.unique(ctx, return_counts=True)
    n = len(x)
    return float((marg * np.log2(marg)).sum() / n - (joint * np.log2(joint)).sum() / n)


def codecs(itemsize: int) -> dict:
    B = numcodecs.Blosc
    return {
        "blosc-zstd-bit-3": B(cname="zstd", clevel=3, shuffle=B.BITSHUFFLE, typesize=itemsize),
        "blosc-zstd-bit-5": B(cname="zstd", clevel=5, shuffle=B.BITSHUFFLE, typesize=itemsize),
        "blosc-lz4-bit-5": B(cname="lz4", clevel=5, shuffle=B.BITSHUFFLE, typesize=itemsize),
        "zstd-3": numcodecs.Zstd(level=3),
    }


def sample(path: str, n_chunks: int, chunk_values: int, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Evenly spaced record-aligned chunks of the float32 store, quantised: [(stored values, map sides)]."""
    store = attnx.open_store(path)
    blocks = list(store.blocks(max_bytes=chunk_values * 4))
    picks = np.unique(np.linspace(0, len(blocks) - 1, n_chunks).round().astype(int))
    per = store.n_layers * store.n_heads
    return [(stored_dtypes.encode(blocks[i].maps_f32(), name), map_shapes(blocks[i].lengths, per)) for i in picks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", action="append", required=True, help="NAME=PATH of a float32 store")
    ap.add_argument("--dtype", action="append", help="stored dtypes to try [q10]")
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--chunk-values", type=int, default=4 << 20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "structure_model.json"))
    args = ap.parse_args()
    numcodecs.blosc.set_nthreads(1)
    numcodecs.blosc.use_threads = False
    rows = []
    load_before = os.getloadavg()
    for spec in args.store:
        corpus, path = spec.split("=", 1)
        for name in args.dtype or ["q10"]:
            d = stored_dtypes.stored_dtype(name)
            table = bucket_table(d.levels)
            chunks = sample(path, args.chunks, args.chunk_values, name)
            q_all = np.concatenate([c for c, _ in chunks])
            ctx_all = np.concatenate([contexts_ref(c, s, table) for c, s in chunks])
            encoded = [encode(c, s, table) for c, s in chunks]
            for (c, s), (perm, counts) in zip(chunks, encoded, strict=True):
                assert np.array_equal(decode(perm, counts, s, table), c), "structure model did not round-trip"
            nbytes = sum(c.nbytes for c, _ in chunks)
            header = sum(counts.size * 4 for _, counts in encoded)  # group sizes as int32
            t_enc, t_un = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                for c, s in chunks:
                    encode(c, s, table)
                t_enc.append(time.perf_counter() - t)
                t = time.perf_counter()
                for (perm, counts), (_, s) in zip(encoded, chunks, strict=True):
                    decode(perm, counts, s, table)
                t_un.append(time.perf_counter() - t)
            row = {
                "corpus": corpus,
                "dtype": name,
                "values": len(q_all),
                "entropy0_bits": entropy(q_all),
                "conditional_entropy_bits": conditional_entropy(q_all, ctx_all),
                "transform_encode_mbs": statistics.median(nbytes / t / 1e6 for t in t_enc),
                "transform_decode_mbs": statistics.median(nbytes / t / 1e6 for t in t_un),
                "codecs": {},
            }
            for cname, codec in codecs(d.storage.itemsize).items():
                plain = [codec.encode(c) for c, _ in chunks]
                sorted_ = [codec.encode(p) for p, _ in encoded]
                t_plain, t_sorted = [], []
                for _ in range(args.repeats):  # interleaved: plain decode, then decode + un-sort
                    t = time.perf_counter()
                    for e in plain:
                        codec.decode(e)
                    t_plain.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    for e, (_, counts), (c, s) in zip(sorted_, encoded, chunks, strict=True):
                        decode(np.frombuffer(codec.decode(e), c.dtype), counts, s, table)
                    t_sorted.append(time.perf_counter() - t)
                b_plain = sum(len(e) for e in plain)
                b_sorted = sum(len(e) for e in sorted_) + header
                row["codecs"][cname] = {
                    "plain_bits": 8 * b_plain / len(q_all),
                    "sorted_bits": 8 * b_sorted / len(q_all),
                    "saving": 1 - b_sorted / b_plain,
                    "plain_decode_mbs": statistics.median(nbytes / t / 1e6 for t in t_plain),
                    "sorted_decode_mbs": statistics.median(nbytes / t / 1e6 for t in t_sorted),
                    "sorted_decode_spread_mbs": [nbytes / max(t_sorted) / 1e6, nbytes / min(t_sorted) / 1e6],
                }
            best_plain = min(v["plain_bits"] for v in row["codecs"].values())
            best_sorted = min(row["codecs"].values(), key=lambda v: v["sorted_bits"])
            row["saving_vs_best_plain"] = 1 - best_sorted["sorted_bits"] / best_plain
            row["wins"] = row["saving_vs_best_plain"] >= 0.15 and best_sorted["sorted_decode_mbs"] >= 300
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    res = {"load_before": load_before, "load_after": os.getloadavg(), "nb": NB, "rows": rows}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(
        "| corpus | dtype | H0 | H(q|ctx) | codec | plain bits | sorted bits | saving "
        "| plain dec MB/s | sorted dec MB/s |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for cname, v in r["codecs"].items():
            print(
                f"| {r['corpus']} | {r['dtype']} | {r['entropy0_bits']:.2f} | {r['conditional_entropy_bits']:.2f} "
                f"| {cname} | {v['plain_bits']:.2f} | {v['sorted_bits']:.2f} | {100 * v['saving']:.1f}% "
                f"| {v['plain_decode_mbs']:,.0f} | {v['sorted_decode_mbs']:,.0f} |"
            )
    print(f"load {res['load_before']} -> {res['load_after']}")


if __name__ == "__main__":
    main()
