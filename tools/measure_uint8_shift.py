"""Measure how uint8 storage shifts the analysis features against float32 (the numbers quoted in
attnx.analysis.quantisation_warnings and the README).

    python tools/measure_uint8_shift.py SENTENCES.txt [WORKDIR]

Extracts SENTENCES.txt (one sentence per line) twice with the default model, as float32 and as uint8,
and prints per-head max / mean |uint8 - float32| of each feature mean and of JS head similarity.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

import attnx.analysis as analysis
from attnx.engine.extract import ExtractOptions, extract


def main() -> None:
    src = sys.argv[1]
    work = Path(sys.argv[2] if len(sys.argv) > 2 else "uint8-shift")
    res = {}
    for dtype in ("float32", "uint8"):
        out = work / f"{dtype}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        extract(ExtractOptions(input=src, output=str(out), device="cpu", dtype=dtype))
        res[dtype] = analysis.features(out)
        res[dtype + "_js"] = analysis.similarity(out, "js", js_records=300)
    report = {}
    for name in res["float32"]:
        d = np.abs(res["uint8"][name] - res["float32"][name])
        rel = d / np.maximum(np.abs(res["float32"][name]), 1e-12)
        report[name] = {
            "max_abs": float(np.nanmax(d)), "mean_abs": float(np.nanmean(d)), "max_rel": float(np.nanmax(rel))
        }
    d = np.abs(res["uint8_js"] - res["float32_js"])
    report["js"] = {"max_abs": float(d.max()), "mean_abs": float(d.mean())}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
