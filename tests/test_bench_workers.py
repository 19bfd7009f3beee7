"""The benchmark workers run the engine's own pieces (backend factory, batches) on a tiny model: a rename in
the engine breaks this test, not only a benchmark run on a GPU machine."""

from __future__ import annotations

from attnx.bench_workers import compute_only_seconds


def test_compute_only_ceiling_runs_extracts_backend():
    sentences = ["a short sentence .", "another one , a little longer than the first ."] * 4
    spec = {"model": "random-bert-tiny", "device": "cpu", "warmup": 2, "dtype": "float16", "limit": len(sentences)}
    seconds = compute_only_seconds(spec, sentences)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
