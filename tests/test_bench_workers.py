"""The benchmark workers run the engine's own pieces (backend factory, batches) on a tiny model: a rename in
the engine breaks this test, not only a benchmark run on a GPU machine."""

from __future__ import annotations

import numpy as np

from attnx.bench_workers import compute_only_seconds


def test_compute_only_ceiling_runs_extracts_backend():
    sentences = ["a short sentence .", "another one , a little longer than the first ."] * 4
    spec = {"model": "random-bert-tiny", "device": "cpu", "warmup": 2, "dtype": "float16", "limit": len(sentences)}
    seconds = compute_only_seconds(spec, sentences)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)


def test_benchmark_batches_are_extracts_batches(tmp_path):
    """The compute-only ceiling and the bare forward pass run the very batches extract runs."""
    import torch

    from attnx.bench_workers import _attnx_batches
    from attnx.engine.backends import torch_backend
    from attnx.engine.extract import ExtractOptions, extract
    from attnx.engine.model import load_model

    sentences = [f"sentence number {k} " + "with more words " * (k % 7) for k in range(90)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(sentences) + "\n")
    seen = []
    submit = torch_backend.TorchBackend.submit

    def spy(self, batch):  # noqa: ANN001, ANN202
        seen.append(batch.lengths.tolist())
        return submit(self, batch)

    spec = {"model": "random-bert-tiny", "device": "cpu", "dtype": "float16", "budget_bytes": 60_000}
    torch_backend.TorchBackend.submit = spy
    try:
        extract(ExtractOptions(input=str(src), output=str(tmp_path / "s.zarr"), model="random-bert-tiny",
                               backend="torch", budget_bytes=60_000))
    finally:
        torch_backend.TorchBackend.submit = submit
    loaded = load_model("random-bert-tiny", dtype=torch.float32)
    planned = [b.lengths.tolist() for b in _attnx_batches(loaded, sentences, spec)]
    assert len(planned) > 5 and planned == seen


def test_benchmark_batches_on_cuda_use_extracts_cuda_budget(monkeypatch):
    """On CUDA the benchmark plans with the budget extract takes there (a share of free device memory), not the
    CPU's 96 MB."""
    import torch

    from attnx.bench_workers import _attnx_batches
    from attnx.config import load_config
    from attnx.engine.batching import plan_batches
    from attnx.engine.model import load_model

    free = 3 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 << 30))
    loaded = load_model("random-bert-tiny")
    sentences = [("word " * (5 + k % 40)).strip() for k in range(3000)]
    spec = {"model": "random-bert-tiny", "device": "cuda", "dtype": "float16"}
    got = [len(b.lengths) for b in _attnx_batches(loaded, sentences, spec)]
    cfg = load_config()
    lengths = np.sort(np.array([k % 40 + 7 for k in range(cfg.window_records)][: len(sentences)]))
    plan = plan_batches(lengths, int(free * cfg.cuda_budget_fraction), loaded.layers_run, loaded.num_heads,
                        cfg.cuda_max_batch_tokens)
    assert got == [int(plan.bounds[j + 1] - plan.bounds[j]) for j in range(len(plan))]
    assert len(got) < 5  # the CPU budget cuts these 3,000 sentences into many more batches


def test_one_model_load_serves_a_process_and_a_wrong_model_is_refused(tmp_path):
    import pytest
    import torch

    from attnx.engine.extract import ExtractOptions, extract
    from attnx.engine.model import load_counts, load_model
    from attnx.errors import AttnxError

    src = tmp_path / "in.txt"
    src.write_text("one sentence .\nand another one .\n")
    loaded = load_model("random-bert-tiny", dtype=torch.float32)
    before = sum(load_counts().values())
    for k in range(2):
        extract(ExtractOptions(input=str(src), output=str(tmp_path / f"{k}.zarr"), model="random-bert-tiny",
                               backend="torch"), model=loaded)
    assert sum(load_counts().values()) == before
    with pytest.raises(AttnxError, match="not the one asked for"):
        extract(ExtractOptions(input=str(src), output=str(tmp_path / "x.zarr"), model="random-bert-tiny",
                               backend="torch", compute_dtype="bfloat16"), model=loaded)
    with pytest.raises(AttnxError, match="not the one asked for"):  # a fresh load would stop after layer 0
        extract(ExtractOptions(input=str(src), output=str(tmp_path / "y.zarr"), model="random-bert-tiny",
                               backend="torch", layers=(0,)), model=loaded)


def test_interleave_writes_every_round_and_stops_before_the_deadline():
    import time

    from attnx.benchkit import interleave

    rounds_seen = []
    out = interleave({"a": lambda: (time.sleep(0.05), {"x": 1.0})[1]}, rounds=50, warmup=False,
                     on_result=lambda reps: rounds_seen.append(len(reps["a"])), deadline=time.time() + 0.3)
    assert 2 <= len(out["a"]) < 50 and rounds_seen == list(range(1, len(out["a"]) + 1))
