"""``extract``: corpus -> tokenize -> length-sorted batches -> backend -> writer -> store.

The run's skeleton (open, backend, create or resume the store, finish) is :mod:`attnx.engine.run`, shared with
the Dask extraction (:mod:`attnx.scaleout.coordinator`); the loop itself (schedule -> execute -> process) is
:func:`attnx.engine.loop.run_windows`, shared with the shards a Dask worker runs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from attnx.config import Config, load_config
from attnx.engine.backend_choice import UNRESOLVED_AUTO
from attnx.engine.background_sink import AsyncWriter
from attnx.engine.batching import plan_batches
from attnx.engine.device import resolve_device_name
from attnx.engine.loop import LoopSettings, RunTotals, run_windows
from attnx.engine.model import LoadedModel, load_model
from attnx.engine.run import (
    ExtractOptions,
    OpenRun,
    RunDone,
    Summary,
    begin_store,
    compute_dtype,
    finish_run,
    open_run,
    run_backend,
)
from attnx.engine.sources import Source
from attnx.engine.tokenize import WindowTokenizer, tokenize_in_background, windows
from attnx.errors import AttnxError, InputError
from attnx.kernels.names import MAP_FEATURES
from attnx.store import AttentionStore
from attnx.threads import torch_threads

__all__ = ["ExtractOptions", "Summary", "extract", "parse_index_list"]


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




def load_checked(
    opts: ExtractOptions, device: str, compute: str, preloaded: LoadedModel | None = None
) -> tuple[LoadedModel, list[int], list[int]]:
    """The model on ``device`` ("cpu", "cuda:1") in ``compute`` precision ("float32"), with the kept layers and
    heads, checked against it. ``preloaded``: that model, loaded already (a benchmark's process runs several
    extractions on one load)."""
    max_layer = max(opts.layers) if opts.layers else None
    if preloaded is None:
        loaded = load_model(opts.model, device=device, dtype=compute, max_layer=max_layer)
    elif (preloaded.name, preloaded.device_name, preloaded.compute) != (opts.model, device, compute) or (
        max_layer is not None and preloaded.layers_run > max_layer + 1  # batches are planned on the layers run
    ):
        raise AttnxError(
            f"the model given ({preloaded.name} on {preloaded.device_name}, {preloaded.compute}, "
            f"{preloaded.layers_run} layers run) is not the one asked for ({opts.model} on {device}, {compute}, "
            f"layers {opts.layers or 'all'})"
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
    opts: ExtractOptions, loaded: LoadedModel, layers: list[int], heads: list[int], device: str, cfg: Config
) -> LoopSettings:
    """How the engine loop batches: a memory budget per batch, padding, what each record's payload is."""
    budget, max_tokens = _budget(opts, device, cfg)
    return LoopSettings(
        plan=functools.partial(
            plan_batches, budget_bytes=budget, layers=loaded.layers_run, heads=loaded.num_heads, max_tokens=max_tokens
        ),
        pad_id=loaded.text_tokenizer.pad_id or 0,
        n_lh=len(layers) * len(heads),
        n_features=len(MAP_FEATURES) if opts.stats_only else None,
        queue_depth=cfg.queue_depth,
    )


def make_backend(
    opts: ExtractOptions, loaded: LoadedModel, layers: list[int], heads: list[int], cfg: Config, threads: int = 0
):
    # ``extract`` resolves auto before this (choose_backend); a caller that does not (the scale-out's workers,
    # which must all run one backend) gets UNRESOLVED_AUTO, the backend its store records (run.store_meta).
    # ``threads``: onnxruntime's intra-op threads on the CPU (0: the usable cores; torch's are set by the caller)
    backend = UNRESOLVED_AUTO if opts.backend == "auto" else opts.backend
    if backend == "torch":
        from attnx.engine.backends.torch_backend import TorchBackend

        return TorchBackend(loaded, layers, heads, opts.dtype, stats_only=opts.stats_only)
    if backend == "onnx":
        if opts.stats_only:
            raise AttnxError("--stats-only runs on the torch backend only (the features are computed on the device)")
        from attnx.engine.backends.onnx_backend import OnnxBackend

        return OnnxBackend(loaded, layers, heads, opts.dtype, threads=threads or None)
    raise AttnxError(f"--backend {opts.backend!r}: choose auto, torch or onnx")


def _budget(opts: ExtractOptions, device: str, cfg: Config) -> tuple[int, int]:
    """(attention bytes per batch, padded tokens per batch) on ``device``."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
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
    device = resolve_device_name(opts.device)
    compute = compute_dtype(opts, device.startswith("cuda"))
    with open_run(opts) as run, torch_threads(cfg.cpu_threads if device.startswith("cpu") else 0):
        return _extract_locked(opts, cfg, device, compute, run, progress, model, backend_factory)


def _extract_locked(
    opts: ExtractOptions,
    cfg: Config,
    device: str,
    compute: str,
    run: OpenRun,
    progress: Callable[[int, int, int], None] | None,
    preloaded: LoadedModel | None,
    backend_factory: Callable[..., object] | None = None,
) -> Summary:
    loaded, layers, heads = load_checked(opts, device, compute, preloaded)
    choice = run_backend(opts, loaded, layers, heads, run.existing, cfg, given=backend_factory is not None)
    opts = replace(opts, backend=choice.backend)  # what the store records and the resume check sees
    if choice.backend == "torch" and backend_factory is None:
        loaded.model  # noqa: B018 - built now: weights that cannot load fail before the store is created
    opened = begin_store(opts, cfg, run, loaded, layers, heads, compute)
    if isinstance(opened, Summary):
        return opened
    writer = opened
    window_records = int(writer.attrs["batching"]["window_records"])
    resumed_from = writer.commit.records
    skip_windows, skip_in_window = divmod(resumed_from, window_records)

    tokenizer = WindowTokenizer(loaded.text_tokenizer, opts.max_length, opts.truncate, source_name=opts.input)
    make = backend_factory or make_backend
    backend = make(opts, loaded, layers, heads, cfg)
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
        locate = functools.partial(first_changed_record, opts, tokenizer, window_records, run.existing)
        windows = tokenize_in_background(
            run.source, tokenizer, window_records, cfg.tokenize_ahead, skip_windows, expect, first_changed=locate
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
    parity = {}
    if choice.verdict is not None and choice.backend == "onnx":
        parity["backend_parity"] = choice.verdict.to_attrs()

    def measure() -> dict:
        from attnx.engine.precision import measure_precision

        return measure_precision(
            opts.model, compute, device=str(device), reference_device=str(device), limit=cfg.precision_check_records
        ).to_attrs()

    done = RunDone(totals.records, totals.tokens, totals.attention_bytes, totals.truncated, totals.batches, seconds)
    return finish_run(opts, cfg, run, writer, done, compute, resumed_from, str(device), choice.backend, measure, parity)


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
