"""The skeleton of an extraction run, shared by one process (:func:`attnx.engine.extract.extract`) and a Dask
cluster (:func:`attnx.scaleout.coordinator.extract_on_cluster`); only the middle (the loop or the shards) differs:

1. :func:`open_run`: the options checked, the input opened, the store locked, replaced (``overwrite``) or found;
2. :func:`run_backend`: the backend that runs (``auto`` resolved, or the one a resumed store records);
3. :func:`begin_store`: a writer on a new store, or on the found one once :func:`check_resumable` passes;
4. :func:`finish_run`: the precision note and the input's digests committed, the :class:`Summary`, and the
   rules on the result (an empty input is an error, truncated records a warning).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from attnx._version import __version__
from attnx.config import Config
from attnx.engine.backend_choice import BACKENDS, UNRESOLVED_AUTO, Choice, choose_backend
from attnx.engine.model import DEFAULT_MODEL, LoadedModel
from attnx.engine.sources import Source, input_fingerprint, raw_sha256
from attnx.engine.tokenize import WindowTokenizer
from attnx.errors import AttnxError, AttnxWarning, StoreError
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

COMPUTE_DTYPE_NAMES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ExtractOptions:
    """Everything that decides what ``extract`` stores (see ``attnx extract --help``)."""

    input: str
    output: str
    model: str = DEFAULT_MODEL
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float16"  # stored dtype: float32 | float16 | uint8 | q8..q16 (attnx.stored_dtypes.DTYPES)
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


def compute_dtype(opts: ExtractOptions, cuda: bool) -> str:
    """The compute precision: ``opts.compute_dtype``, else float16 on CUDA and float32 elsewhere."""
    compute = opts.compute_dtype or ("float16" if cuda else "float32")
    if compute not in COMPUTE_DTYPE_NAMES:
        raise AttnxError(f"--compute-dtype {compute!r}: choose float32, float16 or bfloat16")
    return compute


def check_options(opts: ExtractOptions) -> None:
    """The options' own rules, before anything is opened."""
    if opts.dtype not in STORED_DTYPES:
        raise AttnxError(f"--dtype {opts.dtype!r}: choose one of {', '.join(STORED_DTYPES)}")
    if opts.max_length < 2:
        raise AttnxError(f"--max-length {opts.max_length}: must be at least 2 (room for the special tokens)")


@dataclass
class OpenRun:
    """A run's store and input: the writer lock is held for as long as :func:`open_run`'s block lasts."""

    location: StoreLocation
    source: Source
    lock: WriterLock
    existing: AttentionStore | None  # the store found at the output (to resume or leave alone), if any


@contextlib.contextmanager
def open_run(opts: ExtractOptions) -> Iterator[OpenRun]:
    """Check the options, open the input (fails fast on a bad path), take the store's writer lock (refused at
    once if another writer holds it), remove the store under ``overwrite``, and find an existing one."""
    check_options(opts)
    location = StoreLocation.parse(opts.output)
    source = Source(opts.input, opts.format, opts.text_field, opts.pair_field)
    lock = WriterLock(location).acquire()  # held until the writer closes
    try:
        if opts.overwrite and (location.exists() or location.is_format_1()):
            location.remove()
        existing = AttentionStore(location) if holds_store(location) else None
        yield OpenRun(location, source, lock, existing)
    finally:
        lock.release()


def run_backend(
    opts: ExtractOptions,
    loaded: LoadedModel,
    layers: list[int],
    heads: list[int],
    existing: AttentionStore | None,
    cfg: Config,
    given: bool = False,
    resolve_auto: bool = True,
) -> Choice:
    """The backend that runs: ``given`` by the caller (named by ``opts.backend``), ``auto`` resolved by the
    parity check (:func:`choose_backend`), or with ``resolve_auto=False`` (the workers of a distributed run,
    which must all run one backend) ``auto`` runs :data:`UNRESOLVED_AUTO`."""
    if given:
        return Choice(opts.backend, "given by the caller")
    if not resolve_auto:
        if opts.backend not in BACKENDS:
            raise AttnxError(f"--backend {opts.backend!r}: choose {', '.join(BACKENDS)}")
        if opts.backend == "auto":
            return Choice(UNRESOLVED_AUTO, "every worker of a distributed run runs it")
        return Choice(opts.backend, "asked for")
    recorded = existing.attrs["options"].get("backend") if existing is not None else None
    return choose_backend(
        opts.backend, loaded, layers, heads, opts.dtype, opts.stats_only, recorded, cfg.backend_parity_records
    )


def store_meta(opts: ExtractOptions, loaded: LoadedModel, layers: list[int], heads: list[int], compute: str) -> dict:
    """The attributes a new store records about its model, tokenizer, input and options."""
    tok = loaded.text_tokenizer
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
            "class": tok.class_name,
            "vocab_size": tok.size,
            "cls_id": tok.cls_id,
            "sep_id": tok.sep_id,
            "pad_id": tok.pad_id,
            "lowercase": tok.lowercase,
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


def check_resumable(store: AttentionStore, meta: dict, dtype: str, codec: str) -> None:
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


def begin_store(
    opts: ExtractOptions,
    cfg: Config,
    run: OpenRun,
    loaded: LoadedModel,
    layers: list[int],
    heads: list[int],
    compute: str,
    window_records: int | None = None,
) -> StoreWriter | Summary:
    """A writer on a new store, or on ``run.existing`` once it is checked to come from the same model, input
    and options; a :class:`Summary` if that store is complete. ``window_records``: records per tokenized window
    of a new store (default ``cfg.window_records``); a resumed store keeps its own."""
    out, existing = str(run.location), run.existing
    meta = store_meta(opts, loaded, layers, heads, compute)
    meta["options"]["format"] = run.source.format
    writer_config = WriterConfig.from_config(cfg)
    payload = Payload.stats(MAP_FEATURES) if opts.stats_only else Payload.maps()

    if existing is not None:
        dtype = "float32" if opts.stats_only else opts.dtype  # features are always stored as float32
        check_resumable(existing, meta, dtype, resolve_codec(opts.codec, dtype)[0])
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
        return StoreWriter.resume(run.location, writer_config, lock=run.lock)
    vocab = WindowTokenizer(loaded.text_tokenizer, opts.max_length).vocab
    meta["batching"] = {"window_records": window_records or cfg.window_records}
    return StoreWriter.create(
        run.location,
        meta,
        vocab,
        opts.dtype,
        opts.codec,
        cfg.attn_chunk_elems,
        cfg.record_chunk,
        cfg.token_chunk,
        cfg.codec_level or None,
        conllu=run.source.format == "conllu",
        payload=payload,
        config=writer_config,
        lock=run.lock,
    )


@dataclass(frozen=True)
class RunDone:
    """What the middle of a run (the loop, or the merged shards) did in this run."""

    records: int
    tokens: int
    attention_bytes: int
    truncated: int
    batches: int  # batches (one process) or shards (distributed)
    seconds: float


def finish_run(
    opts: ExtractOptions,
    cfg: Config,
    run: OpenRun,
    writer: StoreWriter,
    done: RunDone,
    compute: str,
    resumed_from: int,
    device: str,
    backend: str,
    measure_precision: Callable[[], dict],
    precision_extra: dict | None = None,
    attrs_extra: dict | None = None,
    phases: dict | None = None,
) -> Summary:
    """Commit the store's last attributes (the input's digests, the precision note; ``measure_precision()``
    compares the compute dtype to float32 on a sample when it is not float32 and the run started the store),
    then the run's :class:`Summary`, checked by :func:`check_result`."""
    precision = precision_note("float32" if opts.stats_only else opts.dtype, compute)
    precision.update(precision_extra or {})
    if compute != "float32" and cfg.precision_check_records and resumed_from == 0:
        precision["measured_vs_float32"] = measure_precision()
    source = run.source
    writer.finish(
        {
            "input": {**writer.attrs["input"], "sha256": source.sha256, "content_sha256": source.content_digest()},
            "precision": precision,
            **(attrs_extra or {}),
        }
    )
    seconds = done.seconds
    summary = Summary(
        store=str(run.location),
        status="complete",
        records=writer.records,
        records_this_run=done.records,
        tokens_this_run=done.tokens,
        seconds=seconds,
        sentences_per_s=done.records / seconds if seconds else 0.0,
        tokens_per_s=done.tokens / seconds if seconds else 0.0,
        attention_mb_per_s=done.attention_bytes / seconds / 1e6 if seconds else 0.0,
        attention_bytes=done.attention_bytes,
        store_bytes=store_nbytes(run.location),  # not a re-open: that would validate every record again
        device=device,
        compute_dtype=compute,
        batches=done.batches,
        phases=dict(phases or {}),
        resumed_from=resumed_from,
        truncated_this_run=done.truncated,
        backend=backend,
    )
    check_result(opts, summary)
    return summary


def check_result(opts: ExtractOptions, summary: Summary) -> None:
    """The rules on a finished run: an empty input is an error (the empty store holds nothing to analyse);
    records cut to ``max_length`` are an :class:`~attnx.errors.AttnxWarning`."""
    if summary.status == "complete" and summary.records == 0:
        raise AttnxError(
            f"{opts.input}: no records to extract (the input is empty); the empty store {summary.store} "
            "holds nothing to analyse"
        )
    if summary.truncated_this_run:
        warnings.warn(
            f"{summary.truncated_this_run:,} of {summary.records_this_run:,} records were longer than "
            f"--max-length {opts.max_length} and were cut (flagged in the store; attnx info counts them; "
            "--no-truncate refuses them instead)",
            AttnxWarning,
            stacklevel=3,
        )


def precision_note(dtype: str, compute: str) -> dict:
    """The stated error of the stored maps against fp32 eager attention (measured by the tests)."""
    storage = STORED_DTYPES[dtype].max_abs_error
    return {"compute_dtype": compute, "storage_dtype": dtype, "storage_max_abs_error": storage}
