"""The Python API takes a store path or an open store everywhere; write_results works as the README says."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paths import SAMPLE

import attnx
from attnx import analysis
from attnx.engine.extract import ExtractOptions, extract


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    src = tmp / "s.txt"
    src.write_text("\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:10]) + "\n")
    out = {}
    for dtype in ("float32", "float16"):
        out[dtype] = tmp / f"{dtype}.zarr"
        extract(ExtractOptions(input=str(src), output=str(out[dtype]), model="random-bert-tiny", dtype=dtype,
                               device="cpu"))
    return out


def test_every_analysis_takes_a_store_object(two_stores):
    path = two_stores["float32"]
    store = attnx.open_store(path)
    np.testing.assert_array_equal(analysis.features(store)["cls"], analysis.features(path)["cls"])
    np.testing.assert_array_equal(analysis.patterns(store), analysis.patterns(path))
    np.testing.assert_array_equal(analysis.similarity(store), analysis.similarity(path))
    by_obj = analysis.compare(store, attnx.open_store(two_stores["float16"]))
    by_path = analysis.compare(path, two_stores["float16"])
    np.testing.assert_array_equal(by_obj["cosine"], by_path["cosine"])
    assert by_obj["records"] == 10 and 0 < by_obj["max_abs_diff"].max() < 5e-4


def test_write_results_as_documented(two_stores, tmp_path):
    """README: ``write_results(partial, out_dir, store)`` turns any partial into the analyze files."""
    path = two_stores["float32"]
    part = analysis.analyze_store(path, analysis.AnalyzeParams(only=("features", "similarity"), metrics=("cosine",)))
    files = analysis.write_results(part, tmp_path / "a", path)
    names = {f.name for f in files}
    assert {"features.csv", "patterns.csv", "similarity_cosine.npy", "params.json"} <= names
    assert "similarity_js.npy" not in names and "relations.csv" not in names
    files = analysis.write_results(part, tmp_path / "b", attnx.open_store(path))
    assert (tmp_path / "b" / "features.csv").read_text() == (tmp_path / "a" / "features.csv").read_text()
