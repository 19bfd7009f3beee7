"""The processes of the extraction benchmark (:mod:`attnx.bench`): one measurement each, in a fresh interpreter.

    python -m attnx.bench_workers SPEC_JSON     # prints one JSON line

Every worker does the same three things and reports them apart:

1. start-up: load the model (``load_s``);
2. warm-up: run its whole path once on the first ``warmup`` sentences (``warmup_s``; for attnx this is a
   complete small extraction into a throw-away store, so it also covers creating and finishing a store);
3. steady state: run its path over all ``sentences`` and time it (``seconds``; attnx: the run summary's
   seconds, which exclude model loading).

Workers: ``baseline`` (transformers as a typical user writes it: eager attention, ``output_attentions=True``,
batches of 32 in corpus order padded to the longest, every layer's maps as float32 numpy saved with
``np.save``), ``forward`` (transformers' forward pass alone, SDPA, no attention output, over attnx's
length-sorted batches tokenized before the clock: a reference, not a ceiling, since attnx runs other
attention code), and ``attnx``
(``attnx.extract`` end to end), which also measures two ceilings of its own row in the same process: its
backend alone over the same batches with nothing stored (``compute_only_s``, the faster of two passes just
before the end-to-end run), and the row's stored values
written through the store's zarr codec pipeline into memory (``codec``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from attnx.config import BLOCK_BYTES


def _sentences(path: str, limit: int, repeat: int) -> list[str]:
    lines = [x.strip() for x in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = lines[:limit] if limit else lines
    return lines * repeat


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_load(spec: dict, attn_implementation: str | None = None):  # noqa: ANN202 - (LoadedModel, seconds)
    """The model as ``spec`` asks, with ``attn_implementation`` (default: attnx's capture); and the seconds taken."""
    from attnx.engine.model import load_model

    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    t = time.perf_counter()
    loaded = load_model(
        spec["model"], device=spec.get("device", "cpu"), dtype=spec.get("compute") or "float32", **kw
    )
    return loaded, time.perf_counter() - t


# ----------------------------------------------------------------------------------------------------------
# baseline: what a typical user writes
# ----------------------------------------------------------------------------------------------------------
def _baseline_pass(loaded, sentences: list[str], out: Path, device: str, bs: int) -> tuple[int, int]:  # noqa: ANN001
    """Maps of ``sentences`` saved as one ``(layers, B, H, T, T)`` float32 .npy per batch; (tokens, bytes saved)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    tokens = 0
    for k in range(0, len(sentences), bs):
        enc = loaded.tokenizer(
            sentences[k : k + bs], padding=True, truncation=True, max_length=512, return_tensors="pt"
        ).to(device)
        tokens += int(enc["attention_mask"].sum())
        with torch.no_grad():
            res = loaded.model(**enc, output_attentions=True)
        attn = torch.stack(res.attentions).float().cpu().numpy()  # (layers, B, H, T, T)
        np.save(out / f"batch{k // bs:06d}.npy", attn)
    _sync(device)
    nbytes = sum(f.stat().st_size for f in out.iterdir())
    shutil.rmtree(out, ignore_errors=True)
    return tokens, nbytes


def worker_baseline(spec: dict) -> dict:
    device, bs = spec.get("device", "cpu"), spec.get("batch_size", 32)
    loaded, load_s = _timed_load(spec, "eager")
    sentences = _sentences(spec["input"], spec["limit"], spec.get("repeat", 1))
    work = Path(spec["workdir"])
    t = time.perf_counter()
    _baseline_pass(loaded, sentences[: spec["warmup"]], work / "baseline-warm", device, bs)
    warmup_s = time.perf_counter() - t
    t = time.perf_counter()
    tokens, nbytes = _baseline_pass(loaded, sentences, work / "baseline", device, bs)
    seconds = time.perf_counter() - t
    return {"sentences": len(sentences), "tokens": tokens, "seconds": seconds, "load_s": load_s,
            "warmup_s": warmup_s, "bytes_stored": nbytes}


# ----------------------------------------------------------------------------------------------------------
# attnx's batches, for the bare forward reference and the compute-only ceiling
# ----------------------------------------------------------------------------------------------------------
def _attnx_batches(loaded, sentences: list[str], spec: dict, stats_only: bool = False) -> Iterator:  # noqa: ANN001
    """attnx's length-sorted, budget-packed TokenBatches of ``sentences`` (tokenizing included): extract's own
    batch plan on the spec's device (on CUDA a budget from the device's free memory, as extract takes it)."""
    from attnx.config import load_config
    from attnx.engine.backends.base import collate
    from attnx.engine.extract import loop_settings
    from attnx.engine.sources import Record
    from attnx.engine.tokenize import WindowTokenizer, windows

    cfg = load_config()
    opts = _options(spec, Path("-"), Path("-"))
    layers, heads = list(range(loaded.num_layers)), list(range(loaded.num_heads))
    settings = loop_settings(opts, loaded, layers, heads, str(spec.get("device", "cpu")), cfg)
    wt = WindowTokenizer(loaded.text_tokenizer, 512)
    records = [Record(i, i + 1, s) for i, s in enumerate(sentences)]
    for chunk in windows(records, cfg.window_records):
        w = wt(chunk)
        plan = settings.plan(w.length)
        for j in range(len(plan)):
            extra = (w.special, w.punct, w.len_a) if stats_only else ()
            yield collate(w.ids, w.offsets, w.segment, plan.batch(j), settings.pad_id, *extra)


def _forward_pass(loaded, sentences: list[str], spec: dict) -> tuple[int, float]:  # noqa: ANN001
    """transformers' forward over attnx's batches (tokenized before the clock); (tokens, seconds)."""
    import torch

    device, tokens = spec.get("device", "cpu"), 0
    batches = list(_attnx_batches(loaded, sentences, spec))
    t = time.perf_counter()
    for b in batches:
        tokens += int(b.lengths.sum())
        with torch.inference_mode():
            loaded.model(
                input_ids=torch.from_numpy(b.input_ids).to(device),
                attention_mask=torch.from_numpy(b.attention_mask).to(device),
                token_type_ids=torch.from_numpy(b.token_type_ids).to(device),
            )
    _sync(device)
    return tokens, time.perf_counter() - t


def worker_forward(spec: dict) -> dict:
    loaded, load_s = _timed_load(spec, "sdpa")
    sentences = _sentences(spec["input"], spec["limit"], spec.get("repeat", 1))
    _, warmup_s = _forward_pass(loaded, sentences[: spec["warmup"]], spec)
    tokens, seconds = _forward_pass(loaded, sentences, spec)
    return {"sentences": len(sentences), "tokens": tokens, "seconds": seconds, "load_s": load_s,
            "warmup_s": warmup_s, "bytes_stored": 0}


# ----------------------------------------------------------------------------------------------------------
# attnx end to end, with its two ceilings
# ----------------------------------------------------------------------------------------------------------
def _options(spec: dict, src: Path, out: Path):  # noqa: ANN202 - ExtractOptions
    from attnx.engine.extract import ExtractOptions

    return ExtractOptions(
        input=str(src),
        output=str(out),
        model=spec["model"],
        device=spec.get("device", "cpu"),
        dtype=spec.get("dtype", "float16"),
        compute_dtype=spec.get("compute"),
        codec=spec.get("codec", "auto"),
        backend=spec.get("backend", "torch"),
        budget_bytes=spec.get("budget_bytes"),
        stats_only=bool(spec.get("stats_only")),
        overwrite=True,
    )


def compute_only_seconds(spec: dict, sentences: list[str], loaded=None) -> list[float]:  # noqa: ANN001
    """attnx's backend over attnx's batches of ``sentences`` (tokenized before the clock starts), each result
    fetched and dropped (no store); after a warm-up on the first ``spec['warmup']`` sentences. Uses extract's
    own backend factory. extract does all of this and more (tokenizing, writing), so it is a ceiling.
    Timed twice; the caller takes the faster (the best case is what bounds the end-to-end run)."""
    import torch

    from attnx.config import load_config
    from attnx.engine.extract import make_backend  # the same backend extract builds, not a copy of it

    cfg = load_config()
    opts = _options(spec, Path("-"), Path("-"))
    if loaded is None:
        loaded, _ = _timed_load(spec)
    layers, heads = list(range(loaded.num_layers)), list(range(loaded.num_heads))
    threads = torch.get_num_threads()
    if cfg.cpu_threads and spec.get("device", "cpu") == "cpu":
        torch.set_num_threads(cfg.cpu_threads)  # as extract does for its run
    backend = make_backend(opts, loaded, layers, heads, cfg)
    seconds = []
    try:
        for part in (sentences[: spec["warmup"]], sentences, sentences):
            batches = list(_attnx_batches(loaded, part, spec, opts.stats_only))  # tokenized before the clock
            t = time.perf_counter()
            for b in batches:
                backend.submit(b).result()
            _sync(spec.get("device", "cpu"))
            seconds.append(time.perf_counter() - t)
    finally:
        backend.close()
        torch.set_num_threads(threads)
    return seconds[1:]


def codec_ceiling(store_path: Path, max_bytes: int = BLOCK_BYTES) -> dict:
    """The store's stored values (evenly spaced blocks up to ``max_bytes``) written through the store's own zarr
    codec pipeline (codec + crc32c, the store's chunk size) into memory: MB/s of stored payload."""
    import zarr

    import attnx
    from attnx.config import load_config
    from attnx.stored_dtypes import zarr_codecs

    st = attnx.open_store(store_path)
    codec, level = st.attrs["codec"], st.attrs["codec_level"]
    blocks = st.plan_blocks(1 << 20)  # blocks of about 1 Mi values (records are never split)
    step = max(1, int(np.ceil(len(blocks) / (max_bytes / (2 << 20)))))
    values = np.concatenate([np.ravel(st.read_block(p0, p1).attn) for p0, p1 in blocks[::step]])
    chunk = load_config().attn_chunk_elems
    arr = zarr.create_array(
        store=zarr.storage.MemoryStore(), shape=values.shape, chunks=(chunk,), dtype=values.dtype,
        **zarr_codecs(codec, values.dtype, level),
    )
    arr[: min(chunk, len(values))] = values[:chunk]  # warm-up: codec objects, thread pool
    t = time.perf_counter()
    arr[:] = values
    seconds = time.perf_counter() - t
    return {"codec": codec, "level": level, "bytes": int(values.nbytes), "seconds": seconds,
            "MBps": values.nbytes / seconds / 1e6}


def worker_attnx(spec: dict) -> dict:
    from attnx.engine.extract import extract

    work = Path(spec["workdir"])
    sentences = _sentences(spec["input"], spec["limit"], spec.get("repeat", 1))
    src, warm_src = work / f"input-{os.getpid()}.txt", work / f"warm-{os.getpid()}.txt"
    src.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    warm_src.write_text("\n".join(sentences[: spec["warmup"]]) + "\n", encoding="utf-8")
    out, warm_out = work / f"store-{os.getpid()}.zarr", work / f"warm-{os.getpid()}.zarr"
    t = time.perf_counter()
    loaded, _ = _timed_load(spec)  # the one load of this process: every extraction and the ceiling share it
    warm = extract(_options(spec, warm_src, warm_out), model=loaded)
    startup_s = time.perf_counter() - t
    result = {"load_s": startup_s - warm.seconds, "warmup_s": warm.seconds}
    if spec.get("ceilings", True):
        result["compute_only_s"] = min(compute_only_seconds(spec, sentences, loaded))
    s = extract(_options(spec, src, out), model=loaded)
    if spec.get("ceilings", True) and not spec.get("stats_only"):
        result["codec"] = codec_ceiling(out)
    import torch

    for p in (src, warm_src):
        p.unlink()
    for p in (out, warm_out):
        shutil.rmtree(p, ignore_errors=True)
    return {
        **result,
        "sentences": s.records,
        "tokens": s.tokens_this_run,
        "seconds": s.seconds,
        "bytes_stored": s.store_bytes,
        "attention_bytes": s.attention_bytes,
        "peak_device_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }


WORKERS = {"baseline": worker_baseline, "forward": worker_forward, "attnx": worker_attnx}


def main(spec: dict) -> dict:
    """Run one worker while sampling RSS every 0.2 s (to tell a plateau from growth); adds ``peak_rss_mb``."""
    import psutil

    samples: list[float] = []
    done = threading.Event()

    def sample_rss() -> None:
        me = psutil.Process()
        while not done.wait(0.2):
            samples.append(me.memory_info().rss / 2**20)

    threading.Thread(target=sample_rss, daemon=True).start()
    result = WORKERS[spec["kind"]](spec)
    done.set()
    from attnx.engine.model import load_counts

    result["model_loads"] = sum(load_counts().values())
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if samples:
        result["rss_profile_mb"] = [
            round(samples[min(len(samples) - 1, int(q * len(samples)))]) for q in (0.1, 0.25, 0.5, 0.75, 0.999)
        ]
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m attnx.bench_workers SPEC_JSON")
    print(json.dumps(main(json.loads(sys.argv[1]))))
