"""``extract``: corpus -> tokenize -> length-sorted batches -> backend -> writer -> store.

The loop is schedule (plan a window's batches) -> execute (backend.submit) -> process (hand the finished
batch, with its records' tokens, to the writer), with ``queue_depth`` batches in flight so batch k+1
computes while batch k is copied and written.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import attnx
from attnx.config import Config, load_config
from attnx.engine.backends.base import PackedBatch, collate
from attnx.engine.batching import plan_batches
from attnx.engine.model import DEFAULT_MODEL, LoadedModel, load_model
from attnx.engine.sources import Source, input_fingerprint
from attnx.engine.tokenize import TokenizedWindow, WindowTokenizer, tokenize_in_background
from attnx.engine.writer import AsyncWriter
from attnx.errors import AttnxError, InputError, StoreError
from attnx.kernels.features import MAP_FEATURES
from attnx.memory import heap_trimmer
from attnx.store import FORMAT, AttentionStore, StoredBatch, StoreWriter, record_sizes, resolve_codec

COMPUTE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ExtractOptions:
    """Everything that decides what ``extract`` stores (see ``attnx extract --help``)."""

    input: str
    output: str
    model: str = DEFAULT_MODEL
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float16"  # stored dtype: float32 | float16 | uint8
    compute_dtype: str | None = None  # float32 | float16 | bfloat16; default fp16 on CUDA, fp32 on CPU
    layers: tuple[int, ...] | None = None  # model layers to keep (0-based); None = all
    heads: tuple[int, ...] | None = None  # heads to keep in every kept layer; None = all
    max_length: int = 512
    truncate: bool = True
    format: str | None = None
    text_field: str = "text"
    pair_field: str | None = "text_b"
    codec: str = "auto"  # see attnx.store.resolve_codec
    backend: str = "torch"
    budget_bytes: int | None = None  # attention bytes per batch; default from Config / device memory
    max_batch_tokens: int | None = None
    stats_only: bool = False  # store per-map features computed on the device instead of the maps


@dataclass
class Summary:
    """What a run did. ``seconds`` excludes model loading."""

    store: str
    status: str  # "complete" | "already complete"
    records: int = 0
    records_this_run: int = 0
    tokens_this_run: int = 0
    seconds: float = 0.0
    sentences_per_s: float = 0.0
    tokens_per_s: float = 0.0
    mb_written_per_s: float = 0.0
    attention_bytes: int = 0
    store_bytes: int = 0
    device: str = ""
    compute_dtype: str = ""
    batches: int = 0
    resumed_from: int = 0
    truncated_this_run: int = 0  # records cut to --max-length in this run

    def to_json(self) -> dict:
        return asdict(self)


def parse_index_list(spec: str | None, limit: int, what: str) -> tuple[int, ...] | None:
    """``"0-5"``, ``"0,3,7-9"`` -> sorted unique indices in ``[0, limit)``; None/"all" -> None."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise AttnxError(f"--{what} {spec!r}: expected indices like 0-5 or 0,3,7") from None
    bad = [k for k in out if not 0 <= k < limit]
    if bad:
        raise AttnxError(f"--{what} {spec!r}: {bad[0]} is outside 0..{limit - 1}")
    return tuple(sorted(out))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AttnxError(f"--device {device}: CUDA is not available on this machine")
    return dev


def _store_meta(opts: ExtractOptions, loaded: LoadedModel, layers: list[int], heads: list[int], compute: str) -> dict:
    tok = loaded.tokenizer
    return {
        "attnx_version": attnx.__version__,
        "model": {
            "name": loaded.name,
            "path": loaded.path,
            "weights_sha256": loaded.weights_sha256,
            "layers": loaded.num_layers,
            "heads": loaded.num_heads,
            "config": loaded.config_dict,
        },
        "tokenizer": {
            "class": type(tok).__name__,
            "vocab_size": len(tok),
            "cls_id": tok.cls_token_id,
            "sep_id": tok.sep_token_id,
            "pad_id": tok.pad_token_id,
            "lowercase": bool(getattr(tok, "do_lower_case", False)),
        },
        "layers": layers,
        "heads": heads,
        "input": input_fingerprint(opts.input),
        "options": {
            "format": None,  # filled by the caller once the source knows it
            "max_length": opts.max_length,
            "truncate": opts.truncate,
            "compute_dtype": compute,
            "text_field": opts.text_field,
            "pair_field": opts.pair_field,
            "backend": opts.backend,
            "stats_only": opts.stats_only,
        },
    }


_MUST_MATCH = ("layers", "heads", "dtype", "codec")


def _check_resumable(store: AttentionStore, meta: dict, dtype: str, codec: str) -> None:
    """Refuse to continue a store made with another model, input or options."""
    a = store.attrs
    want = {**meta, "dtype": dtype, "codec": codec}
    problems = []
    if a["model"]["weights_sha256"] != meta["model"]["weights_sha256"]:
        problems.append(f"model (store: {a['model']['name']}, weights {a['model']['weights_sha256'][:12]})")
    for key in _MUST_MATCH:
        if a.get(key) != want[key]:
            problems.append(f"{key} (store: {a.get(key)}, asked: {want[key]})")
    for key, value in meta["options"].items():
        if a["options"].get(key) != value:
            problems.append(f"{key} (store: {a['options'].get(key)}, asked: {value})")
    old_in, new_in = a.get("input", {}), meta["input"]
    if old_in.get("path") != "-" and new_in.get("path") != "-":
        if old_in.get("size") != new_in.get("size") or old_in.get("head_sha256") != new_in.get("head_sha256"):
            problems.append(f"input (store was made from {old_in.get('path')})")
    if problems:
        raise StoreError(
            f"{store.path}: exists with a different " + "; ".join(problems) + " - use another output path or delete it"
        )


def _stored_batch(
    window: TokenizedWindow,
    idx: np.ndarray,
    packed: PackedBatch,
    keep_from: int,
    n_lh: int,
    n_features: int | None = None,
) -> StoredBatch:
    """The writer's view of records ``idx`` (window-local, physical order), dropping the first ``keep_from``."""
    if keep_from:
        offsets = np.concatenate([[0], np.cumsum(record_sizes(packed.lengths, n_lh, 1, n_features))])
        attn = packed.attn[offsets[keep_from] :]
        idx = idx[keep_from:]
    else:
        attn = packed.attn
    starts = window.offsets[idx]
    lens = window.offsets[idx + 1] - starts
    src = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(int(lens.sum()))
    tokens = {
        "ids": window.ids[src],
        "segment": window.segment[src],
        "special": window.special[src],
        "punct": window.punct[src],
        "word": window.word[src],
    }
    words = word_count = None
    if window.word_offsets is not None:
        w0 = window.word_offsets[idx]
        word_count = window.word_offsets[idx + 1] - w0
        wsrc = np.repeat(w0 - np.concatenate([[0], np.cumsum(word_count)[:-1]]), word_count) + np.arange(
            int(word_count.sum())
        )
        words = {"head": window.word_head[wsrc], "deprel": window.word_deprel[wsrc]}
    return StoredBatch(
        attn=attn,
        input_id=window.first_id + idx,
        length=window.length[idx],
        len_a=window.len_a[idx],
        line=window.line[idx],
        truncated=window.truncated[idx],
        tokens=tokens,
        words=words,
        word_count=word_count,
    )


def _make_backend(opts: ExtractOptions, loaded: LoadedModel, layers: list[int], heads: list[int], cfg: Config):
    if opts.backend == "torch":
        from attnx.engine.backends.torch_backend import TorchBackend

        return TorchBackend(loaded, layers, heads, opts.dtype, ring=cfg.queue_depth * 2 + 3, stats_only=opts.stats_only)
    if opts.backend == "onnx":
        if opts.stats_only:
            raise AttnxError("--stats-only runs on the torch backend only (the features are computed on the device)")
        from attnx.engine.backends.onnx_backend import OnnxBackend

        return OnnxBackend(loaded, layers, heads, opts.dtype)
    raise AttnxError(f"--backend {opts.backend!r}: choose torch or onnx")


def _budget(opts: ExtractOptions, device: torch.device, cfg: Config) -> tuple[int, int]:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = opts.budget_bytes or int(free * cfg.cuda_budget_fraction)
        return budget, opts.max_batch_tokens or cfg.cuda_max_batch_tokens
    return opts.budget_bytes or cfg.cpu_attn_budget_bytes, opts.max_batch_tokens or cfg.cpu_max_batch_tokens


def extract(
    opts: ExtractOptions,
    progress: Callable[[int, int, int], None] | None = None,
    config: Config | None = None,
) -> Summary:
    """Run ``opts.model`` over ``opts.input`` and store every kept attention map in ``opts.output``.

    ``progress(records, tokens, bytes)`` is called after each written batch with this run's totals.
    Resumes an interrupted store; does nothing on a complete one.
    """
    cfg = config or load_config()
    device = resolve_device(opts.device)
    compute = opts.compute_dtype or ("float16" if device.type == "cuda" else "float32")
    if compute not in COMPUTE_DTYPES:
        raise AttnxError(f"--compute-dtype {compute!r}: choose float32, float16 or bfloat16")
    if opts.dtype not in ("float32", "float16", "uint8"):
        raise AttnxError(f"--dtype {opts.dtype!r}: choose float32, float16 or uint8")
    if cfg.cpu_threads and device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)

    out = Path(opts.output)
    existing = AttentionStore(out) if (out / "zarr.json").is_file() else None
    if out.exists() and existing is None and (not out.is_dir() or any(out.iterdir())):
        raise StoreError(f"{out}: exists and is not an attnx store; refusing to overwrite it")

    source = Source(opts.input, opts.format, opts.text_field, opts.pair_field)  # fails fast on a bad path
    loaded = load_model(
        opts.model, device=device, dtype=COMPUTE_DTYPES[compute], max_layer=max(opts.layers) if opts.layers else None
    )
    layers = list(opts.layers) if opts.layers else list(range(loaded.num_layers))
    heads = list(opts.heads) if opts.heads else list(range(loaded.num_heads))
    if layers[-1] >= loaded.num_layers or heads[-1] >= loaded.num_heads:
        raise AttnxError(
            f"{opts.model} has {loaded.num_layers} layers x {loaded.num_heads} heads; "
            f"asked for layers {layers} heads {heads}"
        )
    meta = _store_meta(opts, loaded, layers, heads, compute)
    meta["options"]["format"] = source.format
    window_records = cfg.window_records

    if existing is not None:
        if existing.attrs.get("format") != FORMAT:
            raise StoreError(f"{out}: not an attnx store")
        dtype = "float32" if opts.stats_only else opts.dtype  # features are always stored as float32
        _check_resumable(existing, meta, dtype, resolve_codec(opts.codec, dtype))
        if existing.complete:
            return Summary(
                store=str(out), status="already complete", records=len(existing), store_bytes=existing.nbytes_stored()
            )
        window_records = int(existing.attrs["batching"]["window_records"])
        writer = StoreWriter.resume(out)
    else:
        vocab = WindowTokenizer(loaded.tokenizer, opts.max_length).vocab
        meta["batching"] = {"window_records": window_records}
        writer = StoreWriter.create(
            out,
            meta,
            vocab,
            opts.dtype,
            opts.codec,
            cfg.attn_chunk_elems,
            cfg.record_chunk,
            cfg.token_chunk,
            cfg.zstd_level,
            conllu=source.format == "conllu",
            features=list(MAP_FEATURES) if opts.stats_only else None,
        )
    budget, max_tokens = _budget(opts, device, cfg)
    resumed_from = writer.commit.records
    skip_windows, skip_in_window = divmod(resumed_from, window_records)

    tokenizer = WindowTokenizer(loaded.tokenizer, opts.max_length, opts.truncate, source_name=opts.input)
    backend = _make_backend(opts, loaded, layers, heads, cfg)
    async_writer = AsyncWriter(writer, cfg.queue_depth)
    n_lh = len(layers) * len(heads)
    n_features = len(MAP_FEATURES) if opts.stats_only else None
    pad_id = loaded.tokenizer.pad_token_id or 0
    records = tokens = nbytes = batches = truncated = 0
    in_flight: collections.deque = collections.deque()
    trim = heap_trimmer()
    t0 = time.perf_counter()
    if progress:
        progress(0, 0, 0)  # the clock starts here: rates are work done over time since now

    def process(item: tuple) -> None:
        nonlocal records, tokens, nbytes, truncated
        window, idx, pending, keep_from = item
        stored = _stored_batch(window, idx, pending.result(), keep_from, n_lh, n_features)
        async_writer.put(stored)
        records += len(stored.input_id)
        tokens += int(stored.length.sum())
        nbytes += stored.attn.nbytes
        truncated += int(stored.truncated.sum())
        trim()
        if progress:
            progress(records, tokens, nbytes)

    try:
        windows = tokenize_in_background(source, tokenizer, window_records, cfg.tokenize_ahead, skip_windows)
        for w, window in enumerate(windows):
            plan = plan_batches(window.length, budget, loaded.layers_run, loaded.num_heads, max_tokens)
            done_here = skip_in_window if w == 0 else 0
            for j in range(len(plan)):
                lo, hi = int(plan.bounds[j]), int(plan.bounds[j + 1])
                if hi <= done_here:
                    continue  # committed before the interruption
                idx = plan.batch(j)
                batch = collate(
                    window.ids,
                    window.offsets,
                    window.segment,
                    idx,
                    pad_id,
                    *((window.special, window.punct, window.len_a) if opts.stats_only else ()),
                )
                in_flight.append((window, idx, backend.submit(batch), max(0, done_here - lo)))
                batches += 1
                while len(in_flight) >= cfg.queue_depth:
                    process(in_flight.popleft())
        while in_flight:
            process(in_flight.popleft())
        async_writer.close()
        backend.close()
    except BaseException as exc:
        # bad input further on: keep the work already computed; the store stays resumable, not finished
        try:
            if isinstance(exc, InputError):
                while in_flight:
                    process(in_flight.popleft())
            async_writer.close()
        except AttnxError:
            pass
        raise
    seconds = time.perf_counter() - t0
    precision = _precision_note("float32" if opts.stats_only else opts.dtype, compute)
    if compute != "float32" and cfg.precision_check_records and resumed_from == 0:
        from attnx.engine.precision import measure_precision

        report = measure_precision(
            opts.model, compute, device=str(device), reference_device=str(device), limit=cfg.precision_check_records
        )
        precision["measured_vs_float32"] = report.to_attrs()
    writer.finish(
        {
            "input": {**meta["input"], "sha256": source.sha256} if resumed_from == 0 else meta["input"],
            "precision": precision,
        }
    )
    store_bytes = AttentionStore(out).nbytes_stored()
    return Summary(
        store=str(out),
        status="complete",
        records=writer.records,
        records_this_run=records,
        tokens_this_run=tokens,
        seconds=seconds,
        sentences_per_s=records / seconds if seconds else 0.0,
        tokens_per_s=tokens / seconds if seconds else 0.0,
        mb_written_per_s=nbytes / seconds / 1e6 if seconds else 0.0,
        attention_bytes=nbytes,
        store_bytes=store_bytes,
        device=str(device),
        compute_dtype=compute,
        batches=batches,
        resumed_from=resumed_from,
        truncated_this_run=truncated,
    )


def _precision_note(dtype: str, compute: str) -> dict:
    """The stated error of the stored maps against fp32 eager attention (measured by the tests)."""
    storage = {"float32": 0.0, "float16": 4.9e-4, "uint8": 1.0 / 510}[dtype]
    return {"compute_dtype": compute, "storage_dtype": dtype, "storage_max_abs_error": storage}
