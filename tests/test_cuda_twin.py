"""The CUDA path's host transfer on a CPU twin (helpers/cuda_twin.py): order of calls, device placement, and stores
written through it with many small batches equal to stores written without it (one process, shards, the
precision check's consumer). Issue 21: a ring of 9 reused pinned buffers overwrote maps the writer still held."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cuda_twin import CudaTwin

import attnx
from attnx.config import load_config
from attnx.engine.backends import torch_backend
from attnx.engine.backends.torch_backend import TorchBackend, _CudaTransfer
from attnx.engine.extract import ExtractOptions, extract
from attnx.engine.model import load_model
from attnx.engine.precision import _batches, _encode, run_packed

SAMPLE = Path(attnx.__file__).parent / "data" / "sample.txt"
OUT_DEVICE = torch.device("cuda", 1)  # the output's device; the process's current device is cuda:0
# many small batches, chunks far larger than the run: the writer holds every batch's maps until it finishes
SMALL = {"window_records": 32, "cpu_attn_budget_bytes": 20_000, "cpu_threads": 1, "precision_check_records": 0}


@pytest.fixture
def twin(monkeypatch: pytest.MonkeyPatch) -> CudaTwin:
    """Every TorchBackend made while the test runs copies its results through the twin, to ``OUT_DEVICE``."""
    t = CudaTwin(current_device=torch.device("cuda", 0))
    monkeypatch.setattr(torch_backend, "host_transfer", lambda device: _CudaTransfer(OUT_DEVICE, t))
    return t


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    lines = [s for s in SAMPLE.read_text(encoding="utf-8").splitlines() if s.strip()][:120]
    path = tmp_path_factory.mktemp("twin") / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny():
    return load_model("random-bert-tiny", seed=4)


def _some_batches(model, n: int = 40, batch_size: int = 4):
    texts = [s for s in SAMPLE.read_text(encoding="utf-8").splitlines() if s.strip()][:n]
    return _batches(_encode(model.tokenizer, texts, 128), batch_size, model.tokenizer.pad_token_id or 0)


def test_each_batch_waits_copies_records_and_is_synchronised_before_it_is_read(twin: CudaTwin, tiny):
    backend = TorchBackend(tiny, [0, 1], [0, 1, 2, 3], "float16")
    batches = _some_batches(tiny, n=12)
    pending = [backend.submit(b) for b in batches]
    got = [p.result() for p in pending]
    backend.close()

    events = {}  # event id -> its calls in order
    for call, device, stream, event in twin.log:
        assert device == OUT_DEVICE, (call, device)  # nothing on the process's current device
        if event is not None:
            events.setdefault(event, []).append((call, stream))
    copies = [(c, s) for c, _, s, e in twin.log if c == "copy"]
    assert len(copies) == len(batches) and all(s != "default" for _, s in copies)  # on the copy stream
    computed, copied = sorted(events)[0::2], sorted(events)[1::2]
    assert len(computed) == len(copied) == len(batches)
    for a, b in zip(computed, copied, strict=True):
        assert events[a] == [("record", "default"), ("wait", "copy0")]  # computed on the compute stream, waited for
        assert events[b] == [("record", "copy0"), ("synchronize", "copy0")]  # copied, then synchronised by result()
    order = [(c, e) for c, _, _, e in twin.log if c in ("wait", "copy", "record", "synchronize")]
    for k, (a, b) in enumerate(zip(computed, copied, strict=True)):
        i = order.index(("wait", a))
        assert order[i + 1][0] == "copy" and order[i + 2] == ("record", b), k  # wait -> copy -> record
    assert twin.log[-1] == ("synchronize_device", OUT_DEVICE, None, None)  # close() waits for the output's device

    plain = TorchBackend(tiny, [0, 1], [0, 1, 2, 3], "float16")
    plain.transfer = None  # the CPU path: results are host memory already
    for b, g in zip(batches, got, strict=True):
        want = plain.submit(b).result()
        assert np.array_equal(g.attn, want.attn) and np.array_equal(g.lengths, want.lengths)


def test_maps_a_consumer_keeps_are_never_handed_to_a_later_batch(twin: CudaTwin, tiny):
    """The precision check's consumer (run_packed) keeps every batch; 10 batches, more than the old ring of 8."""
    batches = _some_batches(tiny)
    assert len(batches) == 10
    got = run_packed(tiny, batches)
    plain = TorchBackend(tiny, list(range(tiny.layers_run)), list(range(tiny.num_heads)), "float32")
    plain.transfer = None
    for k, (b, g) in enumerate(zip(batches, got, strict=True)):
        assert np.array_equal(g.attn, plain.submit(b).result().attn), f"batch {k} overwritten"
    assert twin.blocks >= len(batches)  # every kept batch has its own host memory


def _extract(corpus: Path, out: Path, **opts) -> attnx.AttentionStore:
    extract(
        ExtractOptions(input=str(corpus), output=str(out), model="random-bert-tiny", backend="torch", **opts),
        config=load_config(**SMALL),
    )
    return attnx.open_store(out)


def _same_arrays(a: attnx.AttentionStore, b: attnx.AttentionStore) -> None:
    assert len(a) == len(b) == 120
    names = [n for n, _ in a.group.arrays()]
    for group_name, group in a.group.groups():
        names += [f"{group_name}/{n}" for n, _ in group.arrays()]
    assert names
    for name in names:
        assert np.array_equal(np.asarray(a.group[name][:]), np.asarray(b.group[name][:])), name


@pytest.mark.parametrize(
    "opts",
    [{"layers": (0,), "heads": (0,)}, {"layers": (1,), "heads": (1, 3), "dtype": "q10"}, {"stats_only": True}],
    ids=["layer0-head0", "q10-subset", "stats-only"],
)
def test_store_written_through_the_twin_equals_the_store_written_without(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opts: dict
):
    want = _extract(corpus, tmp_path / "cpu.zarr", **opts)
    twin = CudaTwin()
    monkeypatch.setattr(torch_backend, "host_transfer", lambda device: _CudaTransfer(OUT_DEVICE, twin))
    got = _extract(corpus, tmp_path / "twin.zarr", **opts)
    assert sum(1 for c, *_ in twin.log if c == "copy") > 30  # many small batches went through the twin
    _same_arrays(want, got)
    attnx.verify(tmp_path / "twin.zarr")


def test_shards_written_through_the_twin_equal_shards_written_without(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Workers in this process (threads), so the twin reaches them; each shard keeps its head and tail maps."""
    distributed = pytest.importorskip("distributed")
    from attnx.scaleout.coordinator import ScaleOptions, extract_on_cluster

    def run(out: Path) -> attnx.AttentionStore:
        opts = ExtractOptions(
            input=str(corpus), output=str(out), model="random-bert-tiny", backend="torch", layers=(0,), heads=(2,)
        )
        extract_on_cluster(opts, client, ScaleOptions(shard_records=40, torch_threads=1), config=load_config(**SMALL))
        return attnx.open_store(out)

    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as client:
        want = run(tmp_path / "cpu.zarr")
        twin = CudaTwin()
        monkeypatch.setattr(torch_backend, "host_transfer", lambda device: _CudaTransfer(OUT_DEVICE, twin))
        from attnx.scaleout import worker

        worker._ENGINES.clear()  # the workers built their backend for the first run: build it again, with the twin
        got = run(tmp_path / "twin.zarr")
        worker._ENGINES.clear()
    assert sum(1 for c, *_ in twin.log if c == "copy") > 30
    _same_arrays(want, got)
