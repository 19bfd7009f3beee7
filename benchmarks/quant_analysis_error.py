"""What each stored dtype does to the statistics computed from maps (issue 12: which dtype for what).

    python benchmarks/quant_analysis_error.py --store ewt=ewt.f32.zarr --store long=long.f32.zarr

On records of float32 stores (evenly spaced over the store), per stored dtype of :mod:`attnx.stored_dtypes`:
max abs error of the probabilities; of the row entropy ``-sum_j p_ij log2 p_ij`` (bits; Clark et al. 2019
sec. 3, the per-row entropy ``attnx analyze`` averages); of the mean row entropy of each map; of the JS
divergence (bits) between every map and the next head's map of the same record (the head-similarity
statistic); and of the row argmax (fraction of rows whose most-attended token changes, ties counted as
changes). Writes ``benchmarks/results/quant_analysis_error.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import attnx
from attnx import stored_dtypes

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float16", "uint8", "q10", "q12", "q16")


def plogp(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)


def js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JS divergence in bits over the last axis, rows of (..., l)."""
    m = 0.5 * (p + q)
    return (plogp(p).sum(-1) + plogp(q).sum(-1)) * 0.5 - plogp(m).sum(-1)


def stats(maps: np.ndarray) -> dict[str, np.ndarray]:
    """maps (layers, heads, l, l) float64 -> row entropy (L,H,l), map mean entropy (L,H), JS to next head, argmax."""
    h = -plogp(maps).sum(-1)
    return {
        "row_entropy": h,
        "map_entropy": h.mean(-1),
        "js_next_head": js(maps[:, :-1], maps[:, 1:]).mean(-1),
        "argmax": maps.argmax(-1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", action="append", required=True, help="NAME=PATH of a float32 store")
    ap.add_argument("--records", type=int, default=300, help="records per store, evenly spaced")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quant_analysis_error.json"))
    args = ap.parse_args()
    worst = {d: {"prob": 0.0, "row_entropy": 0.0, "map_entropy": 0.0, "js_next_head": 0.0} for d in DTYPES}
    mean_row = {d: [] for d in DTYPES}
    changed = {d: [0, 0] for d in DTYPES}
    for spec in args.store:
        _, path = spec.split("=", 1)
        store = attnx.open_store(path)
        ids = np.unique(np.linspace(0, len(store) - 1, args.records).round().astype(int))
        for i in ids:
            ref32 = store.attention(int(i))
            ref = stats(ref32.astype(np.float64))
            for d in DTYPES:
                got32 = stored_dtypes.decode(stored_dtypes.encode(ref32, d), d)
                got = stats(got32.astype(np.float64))
                w = worst[d]
                w["prob"] = max(w["prob"], float(np.abs(got32 - ref32).max()))
                for k in ("row_entropy", "map_entropy", "js_next_head"):
                    w[k] = max(w[k], float(np.abs(got[k] - ref[k]).max()))
                mean_row[d].append(float(np.abs(got["row_entropy"] - ref["row_entropy"]).mean()))
                changed[d][0] += int((got["argmax"] != ref["argmax"]).sum())
                changed[d][1] += got["argmax"].size
    rows = [
        {
            "dtype": d,
            "stated_bound": stored_dtypes.DTYPES[d].max_abs_error,
            "max_abs_error": worst[d]["prob"],
            "row_entropy_max_abs_bits": worst[d]["row_entropy"],
            "row_entropy_mean_abs_bits": float(np.mean(mean_row[d])),
            "map_mean_entropy_max_abs_bits": worst[d]["map_entropy"],
            "js_next_head_max_abs_bits": worst[d]["js_next_head"],
            "argmax_changed_fraction": changed[d][0] / changed[d][1],
        }
        for d in DTYPES
    ]
    Path(args.out).write_text(
        json.dumps({"stores": args.store, "records": args.records, "rows": rows}, indent=1) + "\n"
    )
    print(
        "| dtype | max abs error | row entropy max err (bits) | mean | map entropy max err "
        "| JS(next head) max err | argmax changed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['dtype']} | {r['max_abs_error']:.3g} | {r['row_entropy_max_abs_bits']:.3g} "
            f"| {r['row_entropy_mean_abs_bits']:.2g} | {r['map_mean_entropy_max_abs_bits']:.3g} "
            f"| {r['js_next_head_max_abs_bits']:.3g} | {100 * r['argmax_changed_fraction']:.3f}% |"
        )


if __name__ == "__main__":
    main()
