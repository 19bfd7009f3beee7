"""``attnx bench host``: the host side of extraction at device speed, measured stage by stage, without a device.

The real model runs once on a sample of the input; every record then gets a real map of its own length
replayed from that sample (:mod:`attnx.engine.backends.replay_backend`), and goes through the real pipeline of
``attnx extract`` (read input, tokenize, batch, collect, encode to the stored dtype, compress, checksum,
write, commit) into a real store. The run summary gives sentences/s, raw GB/s and, per stage, CPU
core-seconds per GB of raw (stored-dtype, uncompressed) attention, from each thread's CPU time:

* ``read + tokenize``: the tokenizer thread (``attnx-tokenizer``);
* ``batch + collect``: the engine thread (collate, pack records for the writer), less the replay's own time;
* ``writer``: the writer thread (``attnx-writer``: per-array values, chunk hand-off, commits);
* ``compress + checksum + store``: the I/O threads (``attnx-io``: codec, crc32c, hand-off to Icechunk);
* ``Icechunk/zarr I/O, other``: the rest of the process (zarr's event loop, Icechunk's own threads).

The replay's own cost (``replay``, standing in for the device) is reported apart and left out of the host's.
Thread CPU times are sampled every 20 ms (a thread that ends loses at most its last 20 ms to ``other``).

Projection: a host keeping up with ``R`` sentences/s of ``b`` bytes each needs
``cores(R) = R x b / 1e9 x sum_s c_s`` cores, ``c_s`` the core-seconds per GB of stage ``s``; a stage that runs
on one thread (tokenizer, engine, writer) also caps the rate at ``1e9 / (b x c_s)`` sentences/s however many
cores there are.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import psutil

# BERT-base float16 attention per sentence of UD EWT's mean length (issue 19): 12 x 12 x l^2 x 2 bytes, summed
PROJECTION_BYTES_PER_SENTENCE = 176e3
PROJECTION_RATES = (5_000, 10_000, 20_000)
STAGES = ("read + tokenize", "batch + collect", "writer", "compress + checksum + store", "Icechunk/zarr I/O, other")
SINGLE_THREAD_STAGES = ("read + tokenize", "batch + collect", "writer")


def _stage_of(name: str) -> str | None:
    if name == "attnx-tokenizer":
        return "read + tokenize"
    if name == "MainThread":
        return "batch + collect"
    if name == "attnx-writer":
        return "writer"
    if name.startswith("attnx-io"):
        return "compress + checksum + store"
    return None


class ThreadCpu:
    """Samples the CPU time of every thread of this process every ``interval`` seconds on a thread of its own."""

    def __init__(self, interval: float = 0.02) -> None:
        self.proc = psutil.Process()
        self.interval = interval
        self.last: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.base: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attnx-cpu-sampler", daemon=True)

    def _sample(self) -> None:
        names = {t.native_id: t.name for t in threading.enumerate()}
        self.names.update({k: v for k, v in names.items() if k is not None})
        for t in self.proc.threads():
            self.last[t.id] = t.user_time + t.system_time

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._sample()
        self.base = dict(self.last)
        self.proc_base = sum(self.proc.cpu_times()[:2])
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """CPU seconds per stage since ``start`` (``other``: the process's total less the named stages and the
        sampler itself)."""
        self._stop.set()
        self._thread.join()
        self._sample()
        total = sum(self.proc.cpu_times()[:2]) - self.proc_base
        out = dict.fromkeys(STAGES, 0.0)
        sampler = 0.0
        for tid, cpu in self.last.items():
            used = cpu - self.base.get(tid, 0.0)
            name = self.names.get(tid, "")
            stage = _stage_of(name)
            if stage is not None:
                out[stage] += used
            elif name == "attnx-cpu-sampler":
                sampler += used
        out[STAGES[-1]] = max(0.0, total - sum(out.values()) - sampler)
        out["total"] = total - sampler
        return out


@dataclass(frozen=True)
class HostBenchOptions:
    input: str
    output: str
    model: str = "minilm"
    dtype: str = "float16"
    io_threads: int | None = None  # None: the config's (ATTNX_IO_THREADS, else what the machine can spare)
    sample: int = 256  # input records the real model runs on
    max_length: int = 512
    overwrite: bool = False


def projection(core_s_per_gb: dict[str, float], bytes_per_sentence: float = PROJECTION_BYTES_PER_SENTENCE) -> dict:
    """Cores a host needs at each of :data:`PROJECTION_RATES` sentences/s (see the module docstring), and
    the rate each single-threaded stage caps the host at."""
    per_gb = sum(core_s_per_gb[s] for s in STAGES)
    gb = bytes_per_sentence / 1e9
    return {
        "bytes_per_sentence": bytes_per_sentence,
        "core_s_per_gb_total": per_gb,
        "formula": "cores(R) = R x bytes_per_sentence / 1e9 x sum_s core_s_per_gb[s]",
        "cores": {str(r): r * gb * per_gb for r in PROJECTION_RATES},
        "single_thread_caps_sentences_per_s": {
            s: (1 / (gb * core_s_per_gb[s]) if core_s_per_gb[s] > 0 else None) for s in SINGLE_THREAD_STAGES
        },
    }


def run_host_bench(opts: HostBenchOptions, log: object = None) -> dict:
    """Run the host pipeline on ``opts.input`` with replayed maps into ``opts.output``; the run summary."""
    from attnx.benchkit import machine
    from attnx.config import io_threads, load_config
    from attnx.engine.backends.replay_backend import ReplayBackend, sample_maps
    from attnx.engine.backends.torch_backend import TorchBackend
    from attnx.engine.extract import ExtractOptions, extract
    from attnx.engine.sources import Source
    from attnx.engine.tokenize import WindowTokenizer, windows
    from attnx.store import open_store

    cfg = load_config(io_threads=opts.io_threads)
    threads = io_threads(cfg)
    cfg = replace(cfg, io_threads=threads)
    made: dict = {}

    def replay_factory(xopts: ExtractOptions, loaded: object, layers: list[int], heads: list[int], _cfg: object):
        t0 = time.perf_counter()
        tokenizer = WindowTokenizer(loaded.text_tokenizer, xopts.max_length, xopts.truncate, source_name=xopts.input)
        source = Source(xopts.input, xopts.format, xopts.text_field, xopts.pair_field)
        sample = (tokenizer(chunk) for chunk in windows(source, opts.sample))
        model = TorchBackend(loaded, layers, heads, "float32")
        try:
            maps = sample_maps(model, sample, loaded.text_tokenizer.pad_id or 0, opts.sample)
        finally:
            model.close()
        made["backend"] = ReplayBackend(maps, xopts.dtype)
        made["sample_seconds"] = time.perf_counter() - t0
        made["sampled_records"] = len(maps)
        return made["backend"]

    cpu = ThreadCpu()
    clock: dict[str, float] = {}
    load = [os.getloadavg()[0]]

    def progress(records: int, tokens: int, nbytes: int) -> None:
        if "start" not in clock:
            clock["start"] = time.perf_counter()
            cpu.start()

    xopts = ExtractOptions(
        input=opts.input,
        output=opts.output,
        model=opts.model,
        device="cpu",
        dtype=opts.dtype,
        compute_dtype="float32",
        max_length=opts.max_length,
        backend="replay",
        overwrite=opts.overwrite,
    )
    summary = extract(xopts, progress=progress, config=cfg, backend_factory=replay_factory)
    seconds = time.perf_counter() - clock["start"]
    stages = cpu.stop()
    replay_cpu = made["backend"].cpu_seconds
    stages["batch + collect"] = max(0.0, stages["batch + collect"] - replay_cpu)
    stages["total"] -= replay_cpu
    gb = summary.attention_bytes / 1e9
    per_gb = {s: stages[s] / gb if gb else 0.0 for s in STAGES}
    store = open_store(opts.output)
    load.append(os.getloadavg()[0])
    return {
        "benchmark": "host",
        "machine": machine(),
        "load_1min": load,
        "input": opts.input,
        "store": opts.output,
        "model": opts.model,
        "layers_heads": [len(store.layers), len(store.heads)],
        "dtype": opts.dtype,
        "io_threads": threads,
        "records": summary.records_this_run,
        "sampled_records": made["sampled_records"],
        "sampled_lengths": len(made["backend"].sampled_lengths),
        "sample_seconds": made["sample_seconds"],
        "seconds": seconds,
        "sentences_per_s": summary.records_this_run / seconds,
        "raw_gb_per_s": gb / seconds,
        "raw_bytes": summary.attention_bytes,
        "bytes_per_sentence": summary.attention_bytes / max(1, summary.records_this_run),
        "store_bytes": summary.store_bytes,
        "cpu_seconds": {
            **{s: stages[s] for s in STAGES},
            "replay (device stand-in)": replay_cpu,
            "host total": stages["total"],
        },
        "core_s_per_gb": per_gb,
        "core_s_per_gb_host": sum(per_gb.values()),
        "projection": projection(per_gb),
        "lengths": {"mean": float(np.mean(store.lengths)), "max": int(np.max(store.lengths))},
    }


def summary_text(r: dict) -> str:
    """The run summary as a few lines and a table (what ``attnx bench host`` prints)."""
    lh = r["layers_heads"]
    lines = [
        f"{r['model']} ({lh[0]} x {lh[1]}), {r['dtype']}, {r['io_threads']} I/O threads: {r['records']:,} records in "
        f"{r['seconds']:.2f} s = {r['sentences_per_s']:,.0f} sentences/s, {r['raw_gb_per_s']:.3f} GB/s raw "
        f"({r['bytes_per_sentence'] / 1e3:.0f} KB/sentence, {r['raw_bytes'] / max(1, r['store_bytes']):.2f}x "
        f"compressed); maps replayed from {r['sampled_records']} sampled records ({r['sample_seconds']:.1f} s)",
        "",
        "| stage | CPU s | core-s per GB |",
        "|---|---:|---:|",
    ]
    for s in STAGES:
        lines.append(f"| {s} | {r['cpu_seconds'][s]:.2f} | {r['core_s_per_gb'][s]:.2f} |")
    lines.append(f"| **host total** | {r['cpu_seconds']['host total']:.2f} | {r['core_s_per_gb_host']:.2f} |")
    lines.append(f"| replay (device stand-in, not counted) | {r['cpu_seconds']['replay (device stand-in)']:.2f} | |")
    p = r["projection"]
    lines += [
        "",
        f"Projection, BERT-base float16 ({p['bytes_per_sentence'] / 1e3:.0f} KB/sentence): {p['formula']}",
        "; ".join(f"{int(k):,} sentences/s: {v:.1f} cores" for k, v in p["cores"].items()),
        "single-thread caps: "
        + "; ".join(f"{s} {v:,.0f}/s" if v else f"{s} -" for s, v in p["single_thread_caps_sentences_per_s"].items()),
    ]
    return "\n".join(lines)
