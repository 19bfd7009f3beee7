"""What a Dask worker runs: count a shard's sizes, then run it with the ordinary engine into its region.

Each worker process loads the model once (cached per process and per settings) and keeps its backend for
every shard it is given; the engine loop is the single-process one (:func:`attnx.engine.loop.run_windows`).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from attnx.config import Config
from attnx.engine.background_sink import BackgroundSink
from attnx.engine.extract import ExtractOptions, load_checked, loop_settings, make_backend
from attnx.engine.sources import Source
from attnx.engine.tokenize import WindowTokenizer, tokenize_in_background
from attnx.scaleout.shards import Shard
from attnx.store.layout import Payload
from attnx.store.region import RegionWriter


@dataclass(frozen=True)
class ShardJob:
    """Settings every shard of a run shares (sent to workers with each task)."""

    opts: ExtractOptions
    device: str  # the workers' device: cpu | cuda
    compute: str  # compute dtype name
    window_records: int
    config: Config
    attrs: dict  # the store's attributes: layers, heads, payload, conllu
    threads: int = 0  # torch threads per worker process (0: leave as is)


@dataclass(frozen=True)
class ShardSizes:
    """Elements a shard adds to each array, and the deprel names it uses (first appearance, input order)."""

    index: int
    records: int
    tokens: int
    payload: int
    words: int
    deprels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShardResult:
    """A finished shard: the fork holding its whole chunks, its edges, and what it did."""

    index: int
    fork: object  # icechunk ForkSession
    edges: dict  # array name -> (head, interior_end, tail)
    records: int
    tokens: int
    words: int
    payload_bytes: int
    truncated: int
    seconds: float
    worker: str = ""
    timings: dict = field(default_factory=dict)


_ENGINES: dict[tuple, tuple] = {}
_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()  # one shard at a time per process, whatever the worker's thread count


def _engine(job: ShardJob) -> tuple:
    """(loaded model, layers, heads, tokenizer, backend, loop settings), built once per worker process."""
    # what the model, backend and batching depend on (not the input or output: one load serves every run)
    key = (dataclasses.replace(job.opts, input="", output="", overwrite=False), job.device, job.compute, job.config,
           job.threads)
    with _LOCK:
        if key not in _ENGINES:
            # a worker process of this run on CPU: the job decides its threads (torch's and ONNX Runtime's)
            cpu_threads = job.threads if job.device == "cpu" else 0
            if cpu_threads:
                torch.set_num_threads(cpu_threads)
            device = str(_worker_device(job.device))  # "cpu", "cuda:0"
            loaded, layers, heads = load_checked(job.opts, device, job.compute)
            tokenizer = WindowTokenizer(
                loaded.text_tokenizer, job.opts.max_length, job.opts.truncate, source_name=job.opts.input
            )
            backend = make_backend(job.opts, loaded, layers, heads, job.config, threads=cpu_threads)
            settings = loop_settings(job.opts, loaded, layers, heads, device, job.config)
            _ENGINES.clear()  # one run at a time per process: drop another run's model
            _ENGINES[key] = (loaded, layers, heads, tokenizer, backend, settings)
        return _ENGINES[key]


def _tokenizer(job: ShardJob) -> WindowTokenizer:
    tokenizer = _engine(job)[3]
    tokenizer.source_name = job.opts.input  # errors name this run's input
    return tokenizer


def _worker_device(kind: str) -> torch.device:
    """``cuda``: this worker's GPU, made the process's current device. dask-cuda shows each worker only its own
    (cuda:0); a plain local cluster started by ``--workers gpus`` names its workers 0..n-1, and worker k takes
    GPU k."""
    if kind != "cuda":
        return torch.device(kind)
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        name = 0
    index = name if isinstance(name, int) else 0
    device = torch.device("cuda", index % max(1, torch.cuda.device_count()))
    torch.cuda.set_device(device)  # what runs without naming a device (kernels, streams, events) runs here
    return device


def _source(job: ShardJob, shard: Shard) -> Source:
    o = job.opts
    return Source.from_bytes(
        o.input, shard.data, o.format or "", shard.first_line, shard.first_id, o.text_field, o.pair_field
    )


def size_shard(job: ShardJob, shard: Shard) -> ShardSizes:
    """Tokenize a shard (no model run) and count what it will add to each array."""
    tokenizer = _tokenizer(job)
    payload = Payload.from_attrs(job.attrs)
    n_lh = len(job.attrs["layers"]) * len(job.attrs["heads"])
    records = tokens = elements = words = 0
    deprels: dict[str, None] = {}
    for window in tokenize_in_background(_source(job, shard), tokenizer, job.window_records, 1):
        lengths = window.length.astype(np.int64)
        records += len(lengths)
        tokens += int(lengths.sum())
        elements += int(payload.record_sizes(lengths, n_lh, 1).sum())
        if window.word_offsets is not None:
            words += int(window.word_offsets[-1])
            deprels.update(dict.fromkeys(window.word_deprel.tolist()))
    return ShardSizes(shard.index, records, tokens, elements, words, tuple(deprels))


def run_shard(
    job: ShardJob,
    shard: Shard,
    fork: object,
    start: dict[str, int],
    end: dict[str, int],
    deprels: dict[str, int] | None,
) -> ShardResult:
    """Run the engine over a shard and write it into ``[start, end)`` of each array through ``fork``."""
    from attnx.engine.loop import run_windows

    t0 = time.perf_counter()
    with _RUN_LOCK:
        _, _, _, _, backend, settings = _engine(job)
        tokenizer = _tokenizer(job)
        t_engine = time.perf_counter()
        writer = RegionWriter(fork, job.attrs, start, end, deprels, job.config.writer_flush_chunks)
        windows = tokenize_in_background(
            _source(job, shard),
            tokenizer,
            job.window_records,
            job.config.tokenize_ahead,
            first_window=shard.first_id // job.window_records,
        )
        sink = BackgroundSink(writer.append, job.config.queue_depth, "attnx-shard-writer")
        try:
            totals = run_windows(windows, backend, sink.put, settings)
        except BaseException as exc:
            try:
                sink.close()
            except Exception as during:  # noqa: BLE001 - reported with the original error, never dropped
                exc.add_note(f"while stopping: {during}")
            raise
        sink.close()
        edges = {name: edge.as_tuple() for name, edge in writer.finish().items()}
    words = end["words/head"] - start["words/head"] if "words/head" in end else 0
    return ShardResult(
        index=shard.index,
        fork=writer.fork,
        edges=edges,
        records=totals.records,
        tokens=totals.tokens,
        words=words,
        payload_bytes=totals.attention_bytes,
        truncated=totals.truncated,
        seconds=time.perf_counter() - t0,
        worker=f"{os.uname().nodename}:{os.getpid()}",
        timings={"engine_load": t_engine - t0},
    )
