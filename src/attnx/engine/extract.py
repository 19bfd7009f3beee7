"""``extract``: corpus -> tokenize -> length-sorted batches -> backend -> writer -> store.

The loop itself (schedule -> execute -> process) is :func:`attnx.engine.loop.run_windows`, shared with the
shards a Dask worker runs (:mod:`attnx.scaleout`).

Longer than most modules on purpose: the whole data path of a run (options, the store's create/resume
checks, the loop, the summary) reads top to bottom in this one file.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from attnx._version import __version__
from attnx.config import Config, load_config
from attnx.engine.backend_choice import UNRESOLVED_AUTO, Choice, choose_backend
from attnx.engine.batching import plan_batches
from attnx.engine.device import resolve_device
from attnx.engine.loop import LoopSettings, RunTotals, run_windows
from attnx.engine.model import DEFAULT_MODEL, LoadedModel, load_model
from attnx.engine.sources import Source, input_fingerprint, raw_sha256
from attnx.engine.tokenize import WindowTokenizer, tokenize_in_background, windows
from attnx.engine.writer import AsyncWriter
from attnx.errors import AttnxError, InputError, StoreError
from attnx.kernels.names import MAP_FEATURES
from attnx.store import (
    STORED_DTYPES,
    AttentionStore,
    Payload,
    StoreLocation,
    StoreWriter,
    WriterConfig,
    WriterLock,
    holds_store,
    resolve_codec,
    store_nbytes,
)

COMPUTE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ExtractOptions:
    """Everything that decides what ``extract`` stores (see ``attnx extract --help``)."""

    input: str
    output: str
    model: str = DEFAULT_MODEL
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float16"  # stored dtype: float32 | float16 | uint8 | q8..q16 (attnx.quantize.DTYPES)
    compute_dtype: str | None = None  # float32 | float16 | bfloat16; default fp16 on CUDA, fp32 on CPU
    layers: tuple[int, ...] | None = None  # model layers to keep (0-based); None = all
    heads: tuple[int, ...] | None = None  # heads to keep in every kept layer; None = all
    max_length: int = 512
    truncate: bool = True
    format: str | None = None
    text_field: str = "text"
    pair_field: str | None = "text_b"
    codec: str = "auto"  # see attnx.store.resolve_codec
    backend: str = "auto"  # auto | torch | onnx (attnx.engine.backend_choice); a store records the one that ran
    budget_bytes: int | None = None  # attention bytes per batch; default from Config / device memory
    max_batch_tokens: int | None = None
    stats_only: bool = False  # store per-map features computed on the device instead of the maps
    overwrite: bool = False  # replace an existing store (local stores) instead of resuming it


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
    attention_mb_per_s: float = 0.0  # stored attention produced per second, before compression
    attention_bytes: int = 0
    store_bytes: int = 0
    device: str = ""
    compute_dtype: str = ""
    batches: int = 0
    resumed_from: int = 0
    truncated_this_run: int = 0  # records cut to --max-length in this run
    phases: dict = field(default_factory=dict)  # distributed runs: the coordinator's seconds per phase
    backend: str = ""  # the backend that ran: torch | onnx

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


def _store_meta(opts: ExtractOptions, loaded: LoadedModel, layers: list[int], heads: list[int], compute: str) -> dict:
    tok = loaded.tokenizer
    return {
        "attnx_version": __version__,
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
            "backend": UNRESOLVED_AUTO if opts.backend == "auto" else opts.backend,
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
    # the input itself is checked against the content digest of what was committed, as it is read again
    if problems:
        raise StoreError(
            f"{store.path}: exists with a different "
            + "; ".join(problems)
            + " - use another output path or --overwrite"
        )


def load_checked(
    opts: ExtractOptions, device: torch.device, compute: str, preloaded: LoadedModel | None = None
) -> tuple[LoadedModel, list[int], list[int]]:
    """The model on ``device`` in ``compute`` precision, with the kept layers and heads, checked against it.
    ``preloaded``: that model, loaded already (a benchmark's process runs several extractions on one load)."""
    max_layer = max(opts.layers) if opts.layers else None
    if preloaded is None:
        loaded = load_model(opts.model, device=device, dtype=COMPUTE_DTYPES[compute], max_layer=max_layer)
    elif (preloaded.name, preloaded.device, preloaded.dtype) != (opts.model, device, COMPUTE_DTYPES[compute]) or (
        max_layer is not None and preloaded.layers_run > max_layer + 1  # batches are planned on the layers run
    ):
        raise AttnxError(
            f"the model given ({preloaded.name} on {preloaded.device}, {preloaded.dtype}, {preloaded.layers_run} "
            f"layers run) is not the one asked for ({opts.model} on {device}, {compute}, layers {opts.layers or 'all'})"
        )
    else:
        loaded = preloaded
    layers = list(opts.layers) if opts.layers else list(range(loaded.num_layers))
    heads = list(opts.heads) if opts.heads else list(range(loaded.num_heads))
    if layers[-1] >= loaded.num_layers or heads[-1] >= loaded.num_heads:
        raise AttnxError(
            f"{opts.model} has {loaded.num_layers} layers x {loaded.num_heads} heads; "
            f"asked for layers {layers} heads {heads}"
        )
    positions = _max_positions(loaded.config_dict)
    if positions and opts.max_length > positions:
        raise AttnxError(f"--max-length {opts.max_length}: {opts.model} has {positions} positions")
    return loaded, layers, heads


def loop_settings(
    opts: ExtractOptions, loaded: LoadedModel, layers: list[int], heads: list[int], device: torch.device, cfg: Config
) -> LoopSettings:
    """How the engine loop batches: a memory budget per batch, padding, what each record's payload is."""
    budget, max_tokens = _budget(opts, device, cfg)
    return LoopSettings(
        plan=functools.partial(
            plan_batches, budget_bytes=budget, layers=loaded.layers_run, heads=loaded.num_heads, max_tokens=max_tokens
        ),
        pad_id=loaded.tokenizer.pad_token_id or 0,
        n_lh=len(layers) * len(heads),
        n_features=len(MAP_FEATURES) if opts.stats_only else None,
        queue_depth=cfg.queue_depth,
    )


def make_backend(opts: ExtractOptions, loaded: LoadedModel, layers: list[int], heads: list[int], cfg: Config):
    # ``extract`` resolves auto before this (choose_backend); a caller that does not (the scale-out's workers,
    # which must all run one backend) gets UNRESOLVED_AUTO, the backend its store records (_store_meta)
    backend = UNRESOLVED_AUTO if opts.backend == "auto" else opts.backend
    if backend == "torch":
        from attnx.engine.backends.torch_backend import TorchBackend

        return TorchBackend(loaded, layers, heads, opts.dtype, stats_only=opts.stats_only)
    if backend == "onnx":
        if opts.stats_only:
            raise AttnxError("--stats-only runs on the torch backend only (the features are computed on the device)")
        from attnx.engine.backends.onnx_backend import OnnxBackend

        return OnnxBackend(loaded, layers, heads, opts.dtype)
    raise AttnxError(f"--backend {opts.backend!r}: choose auto, torch or onnx")


def _budget(opts: ExtractOptions, device: torch.device, cfg: Config) -> tuple[int, int]:
    """(attention bytes per batch, padded tokens per batch) on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = opts.budget_bytes or int(free * cfg.cuda_budget_fraction)
        return budget, opts.max_batch_tokens or cfg.cuda_max_batch_tokens
    return opts.budget_bytes or cfg.cpu_attn_budget_bytes, opts.max_batch_tokens or cfg.cpu_max_batch_tokens


def extract(
    opts: ExtractOptions,
    progress: Callable[[int, int, int], None] | None = None,
    config: Config | None = None,
    model: LoadedModel | None = None,
    backend_factory: Callable[..., object] | None = None,
) -> Summary:
    """Run ``opts.model`` over ``opts.input`` and store every kept attention map in ``opts.output``.

    ``progress(records, tokens, bytes)`` is called after each written batch with this run's totals.
    ``model``: ``opts.model`` already loaded on the run's device in its compute dtype (else it is loaded here).
    Resumes an interrupted store; does nothing on a complete one. ``backend_factory(opts, loaded, layers,
    heads, cfg)``: a backend to run instead of the chosen one (``attnx bench host``'s replay), named by
    ``opts.backend`` in the store.
    """
    cfg = config or load_config()
    device = resolve_device(opts.device)
    compute = opts.compute_dtype or ("float16" if device.type == "cuda" else "float32")
    if compute not in COMPUTE_DTYPES:
        raise AttnxError(f"--compute-dtype {compute!r}: choose float32, float16 or bfloat16")
    if opts.dtype not in STORED_DTYPES:
        raise AttnxError(f"--dtype {opts.dtype!r}: choose one of {', '.join(STORED_DTYPES)}")

    location = StoreLocation.parse(opts.output)
    source = Source(opts.input, opts.format, opts.text_field, opts.pair_field)  # fails fast on a bad path
    lock = WriterLock(location).acquire()  # held until the writer closes; refused at once if taken
    threads = torch.get_num_threads()
    try:
        if cfg.cpu_threads and device.type == "cpu":
            torch.set_num_threads(cfg.cpu_threads)  # for this run only: restored below
        if opts.overwrite and (location.exists() or location.is_format_1()):
            location.remove()
        existing = AttentionStore(location) if holds_store(location) else None
        return _extract_locked(
            opts, cfg, device, compute, location, lock, source, existing, progress, model, backend_factory
        )
    finally:
        torch.set_num_threads(threads)
        lock.release()


def begin_store(
    opts: ExtractOptions,
    cfg: Config,
    location: StoreLocation,
    lock: WriterLock,
    source: Source,
    existing: AttentionStore | None,
    loaded: LoadedModel,
    layers: list[int],
    heads: list[int],
    compute: str,
    window_records: int | None = None,
) -> StoreWriter | Summary:
    """A writer on a new store, or on ``existing`` once it is checked to come from the same model, input and
    options; a :class:`Summary` if ``existing`` is complete. ``window_records``: records per tokenized window
    of a new store (default ``cfg.window_records``); a resumed store keeps its own."""
    out = str(location)
    meta = _store_meta(opts, loaded, layers, heads, compute)
    meta["options"]["format"] = source.format
    writer_config = WriterConfig.from_config(cfg)
    payload = Payload.stats(MAP_FEATURES) if opts.stats_only else Payload.maps()

    if existing is not None:
        dtype = "float32" if opts.stats_only else opts.dtype  # features are always stored as float32
        _check_resumable(existing, meta, dtype, resolve_codec(opts.codec, dtype)[0])
        if existing.complete:
            made_from = existing.attrs.get("input", {})
            if made_from.get("sha256") and raw_sha256(opts.input) != made_from["sha256"]:
                raise StoreError(
                    f"{out}: exists with a different input (it was made from {made_from.get('path')}) "
                    "- use another output path or --overwrite"
                )
            return Summary(
                store=out, status="already complete", records=len(existing), store_bytes=existing.nbytes_stored()
            )
        writer = StoreWriter.resume(location, writer_config, lock=lock)
    else:
        vocab = WindowTokenizer(loaded.tokenizer, opts.max_length).vocab
        meta["batching"] = {"window_records": window_records or cfg.window_records}
        writer = StoreWriter.create(
            location,
            meta,
            vocab,
            opts.dtype,
            opts.codec,
            cfg.attn_chunk_elems,
            cfg.record_chunk,
            cfg.token_chunk,
            cfg.codec_level or None,
            conllu=source.format == "conllu",
            payload=payload,
            config=writer_config,
            lock=lock,
        )
    return writer


def _extract_locked(
    opts: ExtractOptions,
    cfg: Config,
    device: torch.device,
    compute: str,
    location: StoreLocation,
    lock: WriterLock,
    source: Source,
    existing: AttentionStore | None,
    progress: Callable[[int, int, int], None] | None,
    preloaded: LoadedModel | None,
    backend_factory: Callable[..., object] | None = None,
) -> Summary:
    out = str(location)
    loaded, layers, heads = load_checked(opts, device, compute, preloaded)
    recorded = existing.attrs["options"].get("backend") if existing is not None else None
    if backend_factory is None:
        choice = choose_backend(
            opts.backend, loaded, layers, heads, opts.dtype, opts.stats_only, recorded, cfg.backend_parity_records
        )
    else:
        choice = Choice(opts.backend, "given by the caller")
    opts = replace(opts, backend=choice.backend)  # what the store records and the resume check sees
    opened = begin_store(opts, cfg, location, lock, source, existing, loaded, layers, heads, compute)
    if isinstance(opened, Summary):
        return opened
    writer = opened
    window_records = int(writer.attrs["batching"]["window_records"])
    resumed_from = writer.commit.records
    skip_windows, skip_in_window = divmod(resumed_from, window_records)

    tokenizer = WindowTokenizer(loaded.tokenizer, opts.max_length, opts.truncate, source_name=opts.input)
    if backend_factory is None:
        backend = make_backend(opts, loaded, layers, heads, cfg)
    else:
        backend = backend_factory(opts, loaded, layers, heads, cfg)
    async_writer = AsyncWriter(writer, cfg.queue_depth)
    settings = loop_settings(opts, loaded, layers, heads, device, cfg)
    t0 = time.perf_counter()
    if progress:
        progress(0, 0, 0)  # the clock starts here: rates are work done over time since now

    def on_batch(done: RunTotals) -> None:
        if progress:
            progress(done.records, done.tokens, done.attention_bytes)

    try:
        expect = (writer.commit.input_window, writer.commit.input_digest) if resumed_from else None
        locate = functools.partial(first_changed_record, opts, tokenizer, window_records, existing)
        windows = tokenize_in_background(
            source, tokenizer, window_records, cfg.tokenize_ahead, skip_windows, expect, first_changed=locate
        )
        totals = run_windows(windows, backend, async_writer.put, settings, skip_in_window, on_batch)
        async_writer.close()
    except BaseException as exc:
        # bad input further on, or ^C: commit the work already handed on; the store stays resumable
        try:
            async_writer.close()
            if isinstance(exc, (InputError, KeyboardInterrupt)):
                writer.commit_now()
        except Exception as during:  # noqa: BLE001 - reported with the original error, never dropped
            exc.add_note(f"while stopping: {during}")
        raise
    finally:
        backend.close()
    seconds = time.perf_counter() - t0
    precision = _precision_note("float32" if opts.stats_only else opts.dtype, compute)
    if choice.verdict is not None and choice.backend == "onnx":
        precision["backend_parity"] = choice.verdict.to_attrs()
    if compute != "float32" and cfg.precision_check_records and resumed_from == 0:
        from attnx.engine.precision import measure_precision

        report = measure_precision(
            opts.model, compute, device=str(device), reference_device=str(device), limit=cfg.precision_check_records
        )
        precision["measured_vs_float32"] = report.to_attrs()
    writer.finish(
        {
            "input": {**writer.attrs["input"], "sha256": source.sha256, "content_sha256": source.content_digest()},
            "precision": precision,
        }
    )
    store_bytes = store_nbytes(location)  # not a re-open: that would validate every record again
    return Summary(
        store=out,
        status="complete",
        records=writer.records,
        records_this_run=totals.records,
        tokens_this_run=totals.tokens,
        seconds=seconds,
        sentences_per_s=totals.records / seconds if seconds else 0.0,
        tokens_per_s=totals.tokens / seconds if seconds else 0.0,
        attention_mb_per_s=totals.attention_bytes / seconds / 1e6 if seconds else 0.0,
        attention_bytes=totals.attention_bytes,
        store_bytes=store_bytes,
        device=str(device),
        compute_dtype=compute,
        batches=totals.batches,
        resumed_from=resumed_from,
        truncated_this_run=totals.truncated,
        backend=choice.backend,
    )


def first_changed_record(
    opts: ExtractOptions, tokenizer: WindowTokenizer, window_records: int, store: AttentionStore, records: int
) -> tuple[int, int] | None:
    """``(record, line)`` of the first of the input's first ``records`` records whose token ids differ from the
    stored ones (a refused resume names it), or None: stdin cannot be read again, and an edit the tokenizer does
    not see (case in an uncased model, spacing) or in records not committed yet changes no stored token."""
    if opts.input == "-":
        return None
    stop = min(records, len(store))
    source = Source(opts.input, opts.format, opts.text_field, opts.pair_field)
    done = 0
    for chunk in windows(source, window_records):
        w = tokenizer(chunk)
        for j, record in enumerate(chunk):
            if done + j >= stop:
                return None
            ids = w.ids[w.offsets[j] : w.offsets[j + 1]]
            if not np.array_equal(ids, store.token_ids(done + j)):
                return done + j, record.line
        done += len(chunk)
    return None


def _max_positions(config: dict) -> int | None:
    """Longest sequence the model can take (RoBERTa-style models reserve padding_idx + 1 positions)."""
    n = config.get("max_position_embeddings")
    if not isinstance(n, int):
        return None
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        n -= int(config.get("pad_token_id") or 1) + 1
    return n


def _precision_note(dtype: str, compute: str) -> dict:
    """The stated error of the stored maps against fp32 eager attention (measured by the tests)."""
    storage = STORED_DTYPES[dtype].max_abs_error
    return {"compute_dtype": compute, "storage_dtype": dtype, "storage_max_abs_error": storage}
