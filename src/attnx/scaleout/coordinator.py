"""The coordinator of a distributed extraction: cut, count, place, dispatch, merge in order, commit.

1. The input is streamed once and cut into shards of whole windows (:func:`cut_shards`); at most
   ``lookahead`` shards are held (inside their Dask tasks) at any time, never the corpus.
2. A worker counts each shard's sizes (tokenization only); the coordinator gives shard k the region that
   follows shard k-1's in every array, so record i of the input lands where one process would put it.
3. Regions are reserved (arrays grown) and committed; each shard is then sent with a fork of the clean
   session that follows that commit (Icechunk's cooperative writes) and written by the worker.
4. Finished shards are merged in input order: the fork's chunks, plus the edge elements the coordinator
   writes itself (chunks shared by two shards). Commits (by bytes or time, and whenever new shards need
   forks) therefore only ever hold whole shards; a killed job resumes after the last merged shard.

A worker lost mid-shard has its task re-run by Dask on another worker with the same fork; what the lost
worker wrote is never referenced. Errors in a shard (bad input) stop the run after committing what was merged.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from attnx.config import Config, load_config
from attnx.engine.extract import (
    ExtractOptions,
    Summary,
    _precision_note,
    begin_store,
    load_checked,
)
from attnx.engine.sources import Source
from attnx.errors import AttnxError, InputError, StoreError
from attnx.scaleout.cluster import ClusterSpec, connect
from attnx.scaleout.shards import Shard, cut_shards
from attnx.scaleout.worker import ShardJob, ShardResult, ShardSizes, run_shard, size_shard
from attnx.store import AttentionStore, StoreLocation, WriterLock, holds_store, store_nbytes
from attnx.store.layout import Payload, small_arrays


@dataclass(frozen=True)
class ScaleOptions:
    """How a distributed run spreads its work (see ``attnx extract --help``)."""

    shard_records: int = 16384  # input records per shard (rounded up to whole windows)
    retries: int = 3  # times a shard may be lost with its worker before the run fails
    lookahead: int = 0  # shards held at once (0: 3 per worker)
    torch_threads: int = 0  # torch threads in each CPU worker process (0: leave as the worker has it)


@dataclass
class _Placed:
    shard: Shard
    data: Shard  # what the tasks are given
    sizes: ShardSizes
    start: dict[str, int]
    end: dict[str, int]
    epoch: int = -1  # the shape epoch its fork was made in


def _array_groups(attrs: dict) -> dict[str, str]:
    """array name -> which count it grows with: payload | rec | tok | words."""
    payload = Payload.from_attrs(attrs).array
    return {payload: "payload", **{n: n.split("/")[0] for n in small_arrays(bool(attrs.get("conllu")))}}


def extract_on_cluster(
    opts: ExtractOptions,
    client: object,
    scale: ScaleOptions | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    config: Config | None = None,
) -> Summary:
    """``attnx extract`` on the workers of ``client`` (a ``distributed.Client``) into one store.

    The store is the same as a single process would write (record ``i`` is input record ``i``; every
    reader, ``verify`` and the xarray view see no difference). Resumes a store whose last commit ends on a
    shard boundary (any store this function wrote, or a single-process one stopped between windows of the
    right size); does nothing on a complete one.
    """
    from distributed import wait

    cfg = config or load_config()
    scale = scale or ScaleOptions()
    location = StoreLocation.parse(opts.output)
    source = Source(opts.input, opts.format, opts.text_field, opts.pair_field)
    opts = dataclasses.replace(opts, format=source.format)
    device = _workers_device(client, opts.device)
    compute = opts.compute_dtype or ("float16" if device == "cuda" else "float32")
    nworkers = max(1, len(client.scheduler_info()["workers"]))
    lock = WriterLock(location).acquire()
    try:
        if opts.overwrite and (location.exists() or location.is_format_1()):
            location.remove()
        existing = AttentionStore(location) if holds_store(location) else None
        # the coordinator needs the model's identity and vocabulary only: loaded on its CPU in float32
        meta_opts = dataclasses.replace(opts, device="cpu")
        loaded, layers, heads = load_checked(meta_opts, _cpu(), "float32")
        window = min(cfg.window_records, scale.shard_records)
        opened = begin_store(opts, cfg, location, lock, source, existing, loaded, layers, heads, compute, window)
        del loaded
        if isinstance(opened, Summary):
            return opened
        writer = opened
        window = int(writer.attrs["batching"]["window_records"])
        shard_records = -(-scale.shard_records // window) * window
        resumed_from = writer.commit.records
        if resumed_from % shard_records:
            raise StoreError(
                f"{writer.path}: holds {resumed_from} records, not a whole number of {shard_records}-record shards; "
                "finish it without --workers, or give a --shard-records that divides it"
            )
        job = ShardJob(opts, device, compute, window, cfg, _job_attrs(writer.attrs), threads=scale.torch_threads)
        groups = _array_groups(writer.attrs)
        t0 = time.perf_counter()
        if progress:
            progress(0, 0, 0)
        totals = _run(client, wait, job, writer, source, shard_records, groups, scale, nworkers, progress)
        seconds = time.perf_counter() - t0
        precision = _precision_note("float32" if opts.stats_only else opts.dtype, compute)
        if compute != "float32" and cfg.precision_check_records and resumed_from == 0:
            precision["measured_vs_float32"] = client.submit(
                _measure_precision, opts.model, compute, device, cfg.precision_check_records, pure=False
            ).result()
        writer.finish(
            {
                "input": {**writer.attrs["input"], "sha256": source.sha256, "content_sha256": source.content_digest()},
                "precision": precision,
                "distributed": {"shard_records": shard_records, "workers": nworkers},
            }
        )
    finally:
        lock.release()
    return Summary(
        store=str(location),
        status="complete",
        records=writer.records,
        records_this_run=totals["records"],
        tokens_this_run=totals["tokens"],
        seconds=seconds,
        sentences_per_s=totals["records"] / seconds if seconds else 0.0,
        tokens_per_s=totals["tokens"] / seconds if seconds else 0.0,
        attention_mb_per_s=totals["bytes"] / seconds / 1e6 if seconds else 0.0,
        attention_bytes=totals["bytes"],
        store_bytes=store_nbytes(location),
        device=f"{nworkers} x {device}",
        compute_dtype=compute,
        batches=totals["shards"],
        phases=dict(totals["phases"]),
        resumed_from=resumed_from,
        truncated_this_run=totals["truncated"],
    )


def _run(client, wait, job, writer, source, shard_records, groups, scale, nworkers, progress) -> dict:  # noqa: ANN001
    """The coordinator's loop; returns this run's totals. Commits what was merged if anything fails."""
    lookahead = scale.lookahead or 3 * nworkers
    shards = iter(cut_shards(source, shard_records))
    skip = writer.commit.records // shard_records
    for _ in range(skip):  # already merged: read past them, checking that the input is the same
        shard = next(shards, None)
        if shard is None:
            raise InputError(
                source.path, None, "has fewer records than this store already holds; give the original input"
            )
    if skip and shard.digest != writer.commit.input_digest:
        raise InputError(
            source.path,
            None,
            f"differs from the input this store was started with (records before {writer.commit.records} changed); "
            "give the original input, or --overwrite to start again",
        )
    cursor = {name: total for name, total in writer.totals().items()}
    deprels = {name: k for k, name in enumerate(writer.deprels)}
    sizing: collections.OrderedDict[int, tuple[Shard, object, object]] = collections.OrderedDict()
    placed: collections.deque[_Placed] = collections.deque()  # counted, waiting for a fork
    running: dict[object, _Placed] = {}  # run future -> shard
    finished: dict[int, tuple[_Placed, ShardResult]] = {}
    next_merge = skip
    input_done = False
    # arrays are grown ahead of the shards (capacity); a fork can only be merged into a session whose arrays
    # have the shapes it was forked with, or into one holding nothing else (Icechunk caches manifest splits
    # per shape): `epoch` counts the shape changes
    capacity = {name: writer.streams[name].array.shape[0] for name in cursor}
    epoch = 0
    totals = {"records": 0, "tokens": 0, "bytes": 0, "truncated": 0, "shards": 0}
    clock = _PhaseClock()
    totals["phases"] = clock.seconds
    try:
        while True:
            # 1. read ahead: scatter shards and count them on the workers
            while not input_done and len(sizing) + len(placed) + len(running) + len(finished) < lookahead:
                with clock("read"):
                    shard = next(shards, None)
                if shard is None:
                    input_done = True
                    break
                # the shard travels inside its tasks (not scattered): a re-run after a lost worker still has it
                sizing[shard.index] = (shard, shard, client.submit(size_shard, job, shard, pure=False))
            # 2. place counted shards in input order
            while sizing and next(iter(sizing.values()))[2].done():
                index, (shard, data, fut) = sizing.popitem(last=False)
                sizes: ShardSizes = fut.result()
                if sizes.records != shard.records:
                    raise AttnxError(f"shard {index}: {sizes.records} records counted, {shard.records} cut")
                count = {"payload": sizes.payload, "rec": sizes.records, "tok": sizes.tokens, "words": sizes.words}
                start = dict(cursor)
                for name, group in groups.items():
                    cursor[name] += count[group]
                for name in sizes.deprels:
                    deprels.setdefault(name, len(deprels))
                placed.append(_Placed(shard, data, sizes, start, dict(cursor)))
            # 3. dispatch: placed shards need their regions reserved in the commit their fork starts from, and a
            # fork needs a session without uncommitted merges: dispatch in rounds, when no more than one shard per
            # worker is left, so that a commit serves a round of about one shard per worker
            if placed and len(running) <= nworkers:
                if any(capacity[n] < placed[-1].end[n] for n in cursor):
                    # grow by doubling: every change of shape starts an epoch (see _merge), so keep them rare
                    capacity = {n: max(placed[-1].end[n], 2 * capacity[n]) for n in cursor}
                    with clock("commit"):
                        writer.reserve(capacity)
                        writer.commit_now(force=True, message=f"attnx: room for shards to {placed[-1].shard.index}")
                    epoch += 1
                elif writer.session.has_uncommitted_changes:
                    with clock("commit"):
                        writer.commit_now(force=True)
                while placed:
                    p = placed.popleft()
                    p.epoch = epoch
                    with clock("dispatch"):
                        fork = writer.fork()
                    fut = client.submit(
                        run_shard,
                        job,
                        p.data,
                        fork,
                        p.start,
                        p.end,
                        deprels if "words/head" in groups else None,
                        pure=False,
                    )
                    running[fut] = p
            # 4. merge what finished, in input order
            while next_merge in finished:
                p, result = finished.pop(next_merge)
                edges = {n: result.edges[n] for n in groups}
                isolate = p.epoch != epoch  # forked before the last change of shape: merge it alone
                if isolate and writer.session.has_uncommitted_changes:
                    with clock("commit"):
                        writer.commit_now(force=True)
                t_merge = time.perf_counter()
                writer.merge_shard(
                    result.fork,
                    edges,
                    {
                        "records": result.records,
                        "words": result.words,
                        "input_window": (p.shard.end_id - 1) // job.window_records
                        if p.shard.records
                        else writer.commit.input_window,
                        "input_digest": p.shard.digest,
                        "payload_bytes": result.payload_bytes,
                        "deprels": list(p.sizes.deprels),
                    },
                )
                clock.add("merge", time.perf_counter() - t_merge)
                clock.add("workers_busy", result.seconds)  # not the coordinator's: the shards' own run time
                for key, value in (
                    ("records", result.records),
                    ("tokens", result.tokens),
                    ("bytes", result.payload_bytes),
                    ("truncated", result.truncated),
                    ("shards", 1),
                ):
                    totals[key] += value
                next_merge += 1
                if progress:
                    progress(totals["records"], totals["tokens"], totals["bytes"])
                with clock("commit"):
                    if isolate:
                        writer.commit_now()
                    else:
                        writer.maybe_commit()
            if input_done and not sizing and not placed and not running and not finished:
                return totals
            # 5. wait for the next size or run result
            pending = [f for _, _, f in sizing.values()] + list(running)
            if not pending:
                continue
            with clock("wait"):
                wait(pending, return_when="FIRST_COMPLETED")
            for fut in [f for f in running if f.done()]:
                p = running.pop(fut)
                result = fut.result()  # a shard's error (bad input) is raised here
                finished[p.shard.index] = (p, result)
    except BaseException as exc:
        try:
            writer.commit_now()  # whole shards merged so far; the run resumes after them
        except Exception as during:  # noqa: BLE001 - reported with the original error, never dropped
            exc.add_note(f"while stopping: {during}")
        raise
    finally:
        for fut in list(running) + [f for _, _, f in sizing.values()]:
            fut.cancel()


class _PhaseClock:
    """Seconds the coordinator spends in each phase (reported by benchmarks/bench_scale.py)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    @contextlib.contextmanager
    def __call__(self, phase: str):  # noqa: ANN204
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t0


def extract_distributed(
    opts: ExtractOptions,
    cluster: ClusterSpec,
    shard_records: int = ScaleOptions.shard_records,
    progress: Callable[[int, int, int], None] | None = None,
    config: Config | None = None,
    announce: Callable[[str], None] = print,
) -> Summary:
    """Start (or connect to) the cluster ``cluster`` describes and run :func:`extract_on_cluster` on it."""
    if shard_records < 1:
        raise AttnxError(f"--shard-records {shard_records}: needs at least 1")
    scale = ScaleOptions(shard_records=shard_records, retries=cluster.retries, torch_threads=cluster.torch_threads())
    with connect(cluster, announce) as client:
        return extract_on_cluster(opts, client, scale, progress, config)


def _job_attrs(attrs: dict) -> dict:
    keys = ("layers", "heads", "payload", "features", "conllu", "dtype")
    return {k: attrs[k] for k in keys if k in attrs}


def _cpu():  # noqa: ANN202
    import torch

    return torch.device("cpu")


def _workers_device(client: object, device: str) -> str:
    """The device every worker runs on: ``auto`` is CUDA only where every worker has it."""
    if device != "auto":
        return "cuda" if device.startswith("cuda") else device
    have = client.run(_has_cuda)
    return "cuda" if have and all(have.values()) else "cpu"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _measure_precision(model: str, compute: str, device: str, limit: int) -> dict:
    from attnx.engine.precision import measure_precision

    return measure_precision(model, compute, device=device, reference_device=device, limit=limit).to_attrs()
